//! Manual timing of unpack/pack on a real layer (ignored by default):
//! `STRATA_BENCH_BLOB=/path/layer.tgz cargo test --test layer_bench -- --ignored --nocapture`

use std::time::Instant;

/// (user, system) CPU seconds of this process so far, from /proc/self/stat.
fn cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let tick = |i: usize| fields[i].parse::<f64>().unwrap() / 100.0;
    (tick(11), tick(12))
}

use strata::layer::{Compression, PackOptions, pack_dir, unpack};

#[test]
#[ignore]
fn time_unpack_and_pack() {
    let Ok(blob) = std::env::var("STRATA_BENCH_BLOB") else {
        eprintln!("set STRATA_BENCH_BLOB to a layer blob");
        return;
    };
    let base = std::path::Path::new(&blob).parent().unwrap().to_path_buf();
    let rounds: usize = std::env::var("STRATA_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let only_unpack = std::env::var("STRATA_BENCH_ONLY").is_ok_and(|v| v == "unpack");
    for round in 0..rounds {
        let t = tempfile::tempdir_in(&base).unwrap();
        nix::unistd::sync();
        let (u0, s0) = cpu();
        let start = Instant::now();
        let u = unpack(std::fs::File::open(&blob).unwrap(), t.path(), Some(&mut std::io::sink())).unwrap();
        let unpack_s = start.elapsed().as_secs_f64();
        let (u1, s1) = cpu();
        eprintln!("unpack cpu: user {:.2}s sys {:.2}s", u1 - u0, s1 - s0);
        if only_unpack {
            eprintln!("round {round}: unpack {unpack_s:.3}s");
            continue;
        }
        let start = Instant::now();
        let p = pack_dir(
            t.path(),
            std::io::sink(),
            &PackOptions { compression: Compression::Gzip, clamp_mtime: None },
        )
        .unwrap();
        let pack_s = start.elapsed().as_secs_f64();
        eprintln!(
            "round {round}: unpack {unpack_s:.3}s ({} entries, {} MB tar); pack gzip {pack_s:.3}s ({} MB blob)",
            u.entries,
            u.tar_size >> 20,
            p.blob_size >> 20
        );
        drop(t);
        nix::unistd::sync();
    }
}
