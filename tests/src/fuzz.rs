//! A small mutation fuzzer for the parsers that read outside input: replays the committed
//! corpora, then mutates them (bit flips, byte edits, splices, cuts) for a bounded time.
//!
//! Not coverage-guided (that is libFuzzer's part, `scripts/fuzz`): it is the cheap replay of
//! `cargo test`. The time per target is `GITVPS_FUZZ_SECS` (3 s by default). An input that
//! panics is written to `target/tmp/fuzz-crashes/<target>-<hash>` and fails the test with its
//! path: copy it into `tests/fuzz/<target>/` and fix the parser (the replay is the regression test).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Seconds each target runs after the replay.
pub fn budget() -> Duration {
    let secs = std::env::var("GITVPS_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(3);
    Duration::from_secs(secs)
}

/// `tests/fuzz/<target>/`: the regression corpus of a target (seeds, and every input that
/// once crashed it).
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(target)
}

/// `fuzz/corpus/<target>/`: the target's minimized libFuzzer corpus.
pub fn libfuzzer_corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// The files of both corpora of `target`, sorted, with `extra` seeds made at run time.
fn corpus(target: &str, extra: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = [corpus_dir(target), libfuzzer_corpus_dir(target)]
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.filter_map(|e| e.ok().map(|e| e.path()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    files.sort();
    let mut out: Vec<Vec<u8>> = files
        .iter()
        .filter(|p| p.is_file())
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    out.extend(extra);
    assert!(!out.is_empty(), "no corpus for {target}");
    out
}

/// xorshift64*: a fixed seed per target, so a run is repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % (n.max(1) as u64)) as usize
    }
}

/// Bytes that matter to the formats fuzzed here.
const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"=",
    b"\n",
    b" ",
    b"\\u0000",
    b"-1",
    b"18446744073709551616",
    b"1e999",
    b"null",
    b"true",
    b"@@",
    b"\xff",
    b"\xe2\x80\xae",
    b"0",
    b"..",
    b"/",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 => {
                let tok = INTERESTING[rng.below(INTERESTING.len())];
                let at = rng.below(len + 1);
                input.splice(at..at, tok.iter().copied());
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                input.drain(a..b);
            }
            4 => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + 1 + rng.below(64)).min(other.len());
                    let at = rng.below(len + 1);
                    input.splice(at..at, other[a..b].iter().copied());
                }
            }
            5 if len > 0 => {
                // Repeat a slice: long lines, deep nesting.
                let a = rng.below(len);
                let b = (a + 1 + rng.below(8)).min(len);
                let piece = input[a..b].to_vec();
                for _ in 0..rng.below(64) {
                    input.splice(a..a, piece.iter().copied());
                }
            }
            _ => input.truncate(rng.below(len + 1)),
        }
    }
}

/// Runs `target`: every corpus input (plus `extra`), then mutations until the budget is
/// spent; `f` must not panic on any input. Returns how many inputs ran.
pub fn run(target: &str, extra: Vec<Vec<u8>>, f: impl Fn(&[u8])) -> u64 {
    let corpus = corpus(target, extra);
    let check = |input: &[u8]| {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(input)));
        if r.is_err() {
            let dir = crate::target_tmp().join("fuzz-crashes");
            std::fs::create_dir_all(&dir).unwrap();
            let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
            });
            let path = dir.join(format!("{target}-{hash:016x}"));
            std::fs::write(&path, input).unwrap();
            panic!("{target}: this input panics: {}", path.display());
        }
    };
    for input in &corpus {
        check(input);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    let deadline = Instant::now() + budget();
    let mut runs = corpus.len() as u64;
    while Instant::now() < deadline {
        let mut input = corpus[rng.below(corpus.len())].clone();
        mutate(&mut rng, &mut input, &corpus);
        input.truncate(256 * 1024);
        check(&input);
        runs += 1;
    }
    runs
}
