//! Java-compatible murmur2 partitioning.
//!
//! Every producer of the requests topic (ours, librdkafka with
//! `partitioner=murmur2_random`, the Java client's default, confluent-kafka
//! with the same setting) must map a key to the same partition, because the
//! partition's owner is the only writer of that product's stock. Processors
//! recompute this mapping for every record and refuse any record that arrived
//! on another partition.

/// Kafka's murmur2 (the 32-bit MurmurHash2 variant with Kafka's seed), as in
/// `org.apache.kafka.common.utils.Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    // Kafka hashes the length as a Java int; keys are far below 2^31 bytes.
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` in a topic of `partition_count` partitions, as
/// Kafka's default partitioner computes it: `toPositive(murmur2(key)) % n`.
pub fn partition_for(key: &[u8], partition_count: i32) -> i32 {
    assert!(partition_count > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partition_count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves bit-compatibility with Kafka's Java implementation using the
    /// vectors from Kafka's own test suite (UtilsTest.testMurmur2).
    #[test]
    fn matches_kafka_java_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "key {:?}", String::from_utf8_lossy(key));
        }
    }

    /// Proves the partition is always in range, including for keys whose hash
    /// is negative.
    #[test]
    fn partition_in_range() {
        for i in 0..1000 {
            let key = format!("product-{i}");
            let p = partition_for(key.as_bytes(), 8);
            assert!((0..8).contains(&p));
        }
    }
}
