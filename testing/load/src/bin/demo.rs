//! `flashsale-demo`: a demo flash sale through the HTTP ingress, with a report.
//!
//! Configures a few sales, lets many buyers (some products hot) race for far
//! fewer units than they want, with some clients retrying under the same
//! request ID, then checks the answers against both read models: no product
//! oversold, every accepted unit persisted exactly once. Exits non-zero when
//! a check fails.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use flashsale_testkit::{eventually, read_model, unique, Answer, Api, Env};
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use reqwest::StatusCode;

/// Runs a demo flash sale against the local stack and prints a report.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Products on sale.
    #[arg(long, default_value_t = 20)]
    products: usize,
    /// Units of each product.
    #[arg(long, default_value_t = 50)]
    stock: i64,
    /// Most units one buyer may take of one product.
    #[arg(long, default_value_t = 2)]
    per_user_limit: i32,
    /// Distinct buyers.
    #[arg(long, default_value_t = 500)]
    buyers: u64,
    /// Purchase requests in all (retries not counted).
    #[arg(long, default_value_t = 4000)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Every Nth request is sent twice with the same request ID (a client retry).
    #[arg(long, default_value_t = 10)]
    retry_every: usize,
}

/// One planned purchase.
#[derive(Clone)]
struct Plan {
    product: String,
    user: String,
    quantity: i32,
    request_id: String,
}

/// A small deterministic generator: the demo needs variety, not secrecy.
fn mix(i: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 29)
}

fn plans(args: &Args, products: &[String], run: &str) -> Vec<Plan> {
    (0..args.requests as u64)
        .map(|i| {
            // Squaring a uniform draw skews demand towards the first products.
            let u = (mix(i) % 10_000) as f64 / 10_000.0;
            let product =
                products[((u * u) * products.len() as f64) as usize % products.len()].clone();
            Plan {
                product,
                user: format!("{run}-buyer-{}", mix(i + 1) % args.buyers),
                quantity: 1 + (mix(i + 2) % 2) as i32,
                request_id: format!("{run}-req-{i}"),
            }
        })
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("flashsale-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let env = Env::from_env();
    let api = Api::new(&env.ingress_url);
    let run = unique("demo");
    let products: Vec<String> = (0..args.products).map(|i| format!("{run}-p{i}")).collect();
    println!(
        "flashsale demo {run}: {} products x {} units, {} requests from {} buyers via {}",
        args.products, args.stock, args.requests, args.buyers, env.ingress_url
    );
    for p in &products {
        api.configure_sale(p, args.stock, args.per_user_limit)
            .await?;
    }
    let mut work = plans(&args, &products, &run);
    let retries: Vec<Plan> = work
        .iter()
        .step_by(args.retry_every.max(1))
        .cloned()
        .collect();
    let retry_count = retries.len();
    work.extend(retries);

    let latency = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new(3)?));
    let started = Instant::now();
    let answers: Vec<(Plan, anyhow::Result<Answer>)> = stream::iter(work)
        .map(|plan| {
            let (api, latency) = (api.clone(), latency.clone());
            async move {
                let t = Instant::now();
                let answer = api
                    .purchase(
                        &plan.product,
                        &plan.user,
                        plan.quantity,
                        Some(&plan.request_id),
                    )
                    .await;
                let us = t.elapsed().as_micros() as u64;
                if let Ok(mut h) = latency.lock() {
                    let _ = h.record(us);
                }
                (plan, answer)
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let histogram = latency
        .lock()
        .map_err(|_| anyhow::anyhow!("latency lock"))?
        .clone();
    report(
        &args,
        &env,
        &products,
        &answers,
        elapsed,
        &histogram,
        retry_count,
    )
    .await
}

async fn report(
    args: &Args,
    env: &Env,
    products: &[String],
    answers: &[(Plan, anyhow::Result<Answer>)],
    elapsed: Duration,
    latency: &Histogram<u64>,
    retries: usize,
) -> anyhow::Result<bool> {
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut accepted_units: HashMap<&str, i64> = HashMap::new();
    let mut demand: HashMap<&str, i64> = HashMap::new();
    let mut decided: HashMap<&str, &serde_json::Value> = HashMap::new();
    let mut inconsistent_retries = 0;
    for (plan, answer) in answers {
        let key = match answer {
            Ok(a) if a.status == StatusCode::OK => {
                if let Some(first) = decided.insert(&plan.request_id, &a.body) {
                    if first != &a.body {
                        inconsistent_retries += 1;
                    }
                    continue; // a retry: same decision, counted once
                }
                *demand.entry(&plan.product).or_default() += i64::from(plan.quantity);
                if a.body["status"] == "accepted" {
                    *accepted_units.entry(&plan.product).or_default() += i64::from(plan.quantity);
                    "accepted".to_owned()
                } else {
                    format!("rejected {}", a.body["reason"].as_str().unwrap_or("?"))
                }
            }
            Ok(a) => format!("http {}", a.status.as_u16()),
            Err(e) => format!("error {e}"),
        };
        *by_reason.entry(key).or_default() += 1;
    }
    let sent = answers.len();
    println!(
        "\n== answers ({sent} HTTP requests, {retries} of them retries with a repeated request ID)"
    );
    for (k, v) in &by_reason {
        println!("  {k:<28} {v:>7}");
    }
    println!("  retries answered differently {inconsistent_retries:>7}");
    println!("\n== speed");
    println!(
        "  throughput            {:>9.0} requests/s over {:.2} s",
        sent as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        println!(
            "  latency {name}           {:>9.1} ms",
            latency.value_at_quantile(q) as f64 / 1000.0
        );
    }
    println!(
        "  latency max           {:>9.1} ms",
        latency.max() as f64 / 1000.0
    );
    check_read_models(
        args,
        env,
        products,
        &accepted_units,
        &demand,
        inconsistent_retries,
    )
    .await
}

async fn check_read_models(
    args: &Args,
    env: &Env,
    products: &[String],
    accepted: &HashMap<&str, i64>,
    demand: &HashMap<&str, i64>,
    inconsistent_retries: usize,
) -> anyhow::Result<bool> {
    let pool = env.mysql().await?;
    let mut redis = env.redis().await?;
    let mut ok = inconsistent_retries == 0;
    let (mut oversold, mut unsold_with_demand, mut mismatched) = (0, 0, 0);
    println!("\n== per product (stock {} each)", args.stock);
    println!(
        "  {:<30} {:>7} {:>8} {:>8} {:>10} {:>10}",
        "product", "demand", "accepted", "orders", "mysql left", "redis left"
    );
    for p in products {
        let sold = accepted.get(p.as_str()).copied().unwrap_or(0);
        let wanted = demand.get(p.as_str()).copied().unwrap_or(0);
        let expected_left = args.stock - sold;
        let settled = eventually(Duration::from_secs(30), || {
            let (pool, mut redis, p) = (pool.clone(), redis.clone(), p.clone());
            async move {
                let m = read_model(&pool, &mut redis, &p).await?;
                Ok(m.mysql_units == sold
                    && m.mysql_remaining == Some(expected_left)
                    && m.redis_remaining == Some(expected_left))
            }
        })
        .await;
        let m = read_model(&pool, &mut redis, p).await?;
        println!(
            "  {:<30} {:>7} {:>8} {:>8} {:>10} {:>10}",
            p,
            wanted,
            sold,
            m.mysql_units,
            fmt(m.mysql_remaining),
            fmt(m.redis_remaining)
        );
        oversold += usize::from(sold > args.stock);
        // Quantities of 1-2: one unit left with more demand is a real miss.
        unsold_with_demand += usize::from(wanted >= args.stock + 2 && sold < args.stock);
        mismatched += usize::from(!settled);
    }
    ok &= oversold == 0 && unsold_with_demand == 0 && mismatched == 0;
    println!("\n== checks");
    println!(
        "  oversold products                     {oversold:>4}  {}",
        verdict(oversold == 0)
    );
    println!(
        "  units left unsold despite demand      {unsold_with_demand:>4}  {}",
        verdict(unsold_with_demand == 0)
    );
    println!(
        "  read models disagreeing with answers  {mismatched:>4}  {}",
        verdict(mismatched == 0)
    );
    println!(
        "  retries answered differently          {inconsistent_retries:>4}  {}",
        verdict(inconsistent_retries == 0)
    );
    println!("\n{}", if ok { "DEMO OK" } else { "DEMO FAILED" });
    Ok(ok)
}

fn fmt(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "FAIL"
    }
}
