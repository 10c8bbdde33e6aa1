//! The run's seeded generator, so a run's plan and fault targets can be
//! reproduced from the seed it prints (`FLASHSALE_CHAOS_SEED`).
//!
//! It is `rand`'s [`StdRng`]. Its algorithm is not guaranteed to stay the
//! same across `rand` versions, so a seed reproduces a run of the same build
//! (the same `Cargo.lock`), which is all `FLASHSALE_CHAOS_SEED` promises.

use rand::rngs::StdRng;
use rand::SeedableRng;

/// The generator every part of the run draws from.
pub type Rng = StdRng;

/// A generator from `seed`: the same seed gives the same draws (same build).
pub fn seeded(seed: u64) -> Rng {
    StdRng::seed_from_u64(seed)
}
