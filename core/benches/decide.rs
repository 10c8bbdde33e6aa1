//! Decisions per second of the pure decision core on one core.
//!
//! `cargo bench -p flashsale-processors --bench decide`
//!
//! The state is a busy partition in steady state: 128 products, the 16
//! hottest sold out, the dedupe memory full (every decision also evicts the
//! oldest remembered request ID), per-user totals growing. Requests follow a
//! flash sale's mix: Zipf-skewed products (~62% of requests hit a sold-out
//! product), the rest mostly accepted, some over their per-user limit, 1%
//! repeats of a recent request ID. Inputs are built outside the timed
//! region, as the runner receives them already decoded; dropping each
//! outcome is timed (the runner pays for it too). The clock is the thread's
//! on-CPU time (see [`CpuClock`]), so other processes on a shared machine
//! do not inflate the figures.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flashsale_core::{DedupeLimits, PartitionState, Position};
use flashsale_schemas::{
    ConfigureSale, ProductId, PurchaseRequest, Request, RequestId, SaleTerms, UserId,
};
use rust_decimal::Decimal;

/// The allocator the processor binary runs with (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Products in the partition.
const PRODUCTS: usize = 128;
/// The hottest products are sold out (stock 0).
const SOLD_OUT: usize = 16;
/// Distinct buyers.
const USERS: usize = 50_000;
/// Remembered request IDs: kept below the production default (2 M) so the
/// bench fits comfortably in a shared machine's memory; at this size the
/// map already far exceeds the CPU caches, which is what matters.
const DEDUPE_ENTRIES: usize = 250_000;
/// A dedupe memory small enough to stay in the CPU caches.
const SMALL_DEDUPE_ENTRIES: usize = 1_000;
/// One request in this many repeats a recent request ID.
const REPEAT_EVERY: u64 = 100;

/// What a batch of requests looks like.
#[derive(Clone, Copy)]
enum Mix {
    /// The flash-sale mix described at the top.
    FlashSale,
    /// Every request hits a sold-out product: the cheapest, commonest path.
    SoldOutOnly,
}

/// A partition state and a generator of fresh requests for it.
struct Fixture {
    /// The partition being decided.
    state: PartitionState,
    /// Product IDs, hottest first.
    products: Vec<ProductId>,
    /// Buyer IDs.
    users: Vec<UserId>,
    /// Cumulative Zipf(1.0) probabilities over the products.
    cdf: Vec<f64>,
    /// Offset of the next input.
    offset: i64,
    /// Counter for unique request IDs.
    serial: u64,
    /// SplitMix64 state: reproducible variety.
    rng: u64,
    /// The dedupe limits every decision uses.
    limits: DedupeLimits,
}

impl Fixture {
    fn new(dedupe_entries: usize) -> Self {
        let weights: Vec<f64> = (1..=PRODUCTS).map(|k| 1.0 / k as f64).collect();
        let total: f64 = weights.iter().sum();
        let cdf = weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w / total;
                Some(*acc)
            })
            .collect();
        let mut fixture = Self {
            state: PartitionState::starting_at(0),
            products: (0..PRODUCTS)
                .map(|i| ProductId::parse(&format!("sku-{i}")).unwrap())
                .collect(),
            users: (0..USERS)
                .map(|i| UserId::parse(&format!("user-{i}")).unwrap())
                .collect(),
            cdf,
            offset: 0,
            serial: 0,
            rng: 0x5EED,
            limits: DedupeLimits {
                entries_max: dedupe_entries,
                ..DedupeLimits::default()
            },
        };
        fixture.configure_sales();
        // Fill the dedupe memory so every measured decision also evicts.
        for (at, request) in fixture.batch(dedupe_entries as u64 + 1000, Mix::FlashSale) {
            fixture.state.decide(at, &request, fixture.limits);
        }
        fixture
    }

    fn configure_sales(&mut self) {
        for (i, product) in self.products.clone().into_iter().enumerate() {
            let stock = if i < SOLD_OUT { 0 } else { 1_000_000_000_000 };
            let request = Request::ConfigureSale(ConfigureSale {
                command_id: RequestId::parse(&format!("cfg-{i}")).unwrap(),
                product_id: product,
                terms: SaleTerms {
                    stock,
                    per_user_limit: 2,
                    price: Decimal::new(999, 2),
                    starts_at_ms: None,
                    ends_at_ms: None,
                },
                issued_at_ms: 0,
            });
            let at = self.position();
            self.state.decide(at, &request, self.limits);
        }
    }

    fn position(&mut self) -> Position {
        let at = Position {
            partition: 3,
            offset: self.offset,
        };
        self.offset += 1;
        at
    }

    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `n` fresh inputs at the next offsets.
    fn batch(&mut self, n: u64, mix: Mix) -> Vec<(Position, Request)> {
        (0..n).map(|_| self.request(mix)).collect()
    }

    fn request(&mut self, mix: Mix) -> (Position, Request) {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let product = match mix {
            Mix::FlashSale => self.cdf.partition_point(|&c| c <= u).min(PRODUCTS - 1),
            Mix::SoldOutOnly => (u * SOLD_OUT as f64) as usize,
        };
        self.serial += 1;
        // A repeat reuses a request ID from ~500 requests ago: still
        // remembered, so it takes the dedupe path.
        let serial = if self.serial.is_multiple_of(REPEAT_EVERY) && self.serial > 500 {
            self.serial - 500
        } else {
            self.serial
        };
        let user_index = (self.next() % USERS as u64) as usize;
        let user = self.users[user_index].clone();
        let request = Request::Purchase(PurchaseRequest {
            request_id: RequestId::parse(&format!("req-{serial}")).unwrap(),
            user_id: user,
            product_id: self.products[product].clone(),
            quantity: 1 + (self.next() % 2) as i32,
            // 1000 requests per millisecond of record time.
            received_at_ms: 1_700_000_000_000 + (self.serial / 1000) as i64,
        });
        (self.position(), request)
    }
}

/// Time this thread spent on a CPU (`CLOCK_THREAD_CPUTIME_ID`), falling
/// back to wall time where the platform has no such clock. The development
/// machines are small and shared: wall time would count the slices other
/// processes got, and "decisions per second on one core" would drift with
/// their load.
struct CpuClock {
    /// On-CPU time at the start, when readable.
    cpu: Option<cpu_time::ThreadTime>,
    /// Wall time at the start, the fallback.
    wall: Instant,
}

impl CpuClock {
    fn start() -> Self {
        Self {
            cpu: cpu_time::ThreadTime::try_now().ok(),
            wall: Instant::now(),
        }
    }

    fn elapsed(&self) -> Duration {
        match &self.cpu {
            Some(cpu) => cpu.try_elapsed().unwrap_or_else(|_| self.wall.elapsed()),
            None => self.wall.elapsed(),
        }
    }
}

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4));
    // The third case keeps the dedupe memory tiny (cache-resident): the gap
    // to the first is what the large remembered-outcomes map costs.
    let cases = [
        ("flash_sale_mix", Mix::FlashSale, DEDUPE_ENTRIES),
        ("sold_out_only", Mix::SoldOutOnly, DEDUPE_ENTRIES),
        (
            "flash_sale_mix_small_dedupe",
            Mix::FlashSale,
            SMALL_DEDUPE_ENTRIES,
        ),
    ];
    for (name, mix, dedupe_entries) in cases {
        let mut fixture = Fixture::new(dedupe_entries);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let inputs = fixture.batch(iters, mix);
                let limits = fixture.limits;
                let clock = CpuClock::start();
                for (at, request) in &inputs {
                    black_box(fixture.state.decide(*at, request, limits));
                }
                clock.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
