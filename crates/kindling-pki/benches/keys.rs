//! The cost of the PKI that `create manifests` makes for the demo cluster: 22 keys (4 for CAs
//! and the service-account key, 18 for leaves) and 21 signatures, with ECDSA P-256 and with RSA
//! 2048. Prints the median of several runs.
//!
//! Run: `cargo bench -p kindling-pki --bench keys`

use std::hint::black_box;
use std::time::{Duration, Instant};

use kindling_pki::{Ca, KeyAlgorithm, LeafSpec};
use time::OffsetDateTime;

const CAS: usize = 3;
const LEAVES: usize = 18;
const RUNS: usize = 5;

fn demo_pki(algorithm: KeyAlgorithm) {
    let now = OffsetDateTime::now_utc();
    let cas: Vec<Ca> = (0..CAS)
        .map(|i| {
            Ca::generate(
                &format!("ca{i}"),
                algorithm,
                now,
                time::Duration::days(3650),
            )
            .unwrap()
        })
        .collect();
    black_box(kindling_pki::generate_key(algorithm).unwrap());
    for i in 0..LEAVES {
        let spec = LeafSpec::client(&format!("leaf{i}"), &[]);
        black_box(
            cas[i % CAS]
                .issue(&spec, algorithm, now, time::Duration::days(365))
                .unwrap(),
        );
    }
}

fn main() {
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
        let mut times: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                demo_pki(algorithm);
                start.elapsed()
            })
            .collect();
        times.sort();
        let median = times[RUNS / 2];
        println!(
            "{algorithm:<6} demo PKI (22 keys, 21 certificates): median {:>8.2} ms, {:.2} ms per key+cert",
            median.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e3 / 22.0
        );
    }
}
