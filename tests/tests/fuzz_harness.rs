//! The fuzz harnesses, run over pseudo-random inputs so CI exercises them
//! even without a nightly toolchain.

use astral_sim::fuzzing::run_ordering;
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(300), failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn ordering_two_streams(data in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert_eq!(run_ordering(&data, 2, false), Ok(()));
    }

    #[test]
    fn ordering_three_streams_with_kills(data in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert_eq!(run_ordering(&data, 3, true), Ok(()));
    }
}

/// Regression: a schedule (found by the property test) where the opener
/// closed gracefully but the acceptor ended "peer unreachable".
#[test]
fn regression_three_streams_graceful_vs_unreachable() {
    let data: &[u8] = &[
        0, 193, 86, 0, 0, 0, 0, 246, 21, 0, 0, 0, 0, 39, 0, 0, 0, 0, 0, 47, 215, 7, 0, 39, 0, 103,
        0, 7, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 9, 0, 0, 44, 0, 44, 7, 14, 0, 39, 54, 139, 0, 23,
        39, 18, 35, 0, 7, 18, 71, 186, 0, 30, 0, 0, 72, 0, 0, 0, 7, 3, 134, 117, 0, 0, 0, 0, 39,
        159, 119, 0, 174, 128, 0, 0, 151, 112, 7, 0, 245, 163, 61, 147, 149, 19, 0, 5, 231, 110,
        71, 15, 201, 111, 60, 92, 33, 125, 50, 142, 10, 121, 226, 250, 152, 191, 255, 28, 87, 55,
        54, 78, 212, 227, 176, 103, 138, 226, 126, 232, 200, 225, 246, 65, 24, 78, 214, 238, 166,
        124, 160, 194, 26, 16, 154, 218, 247, 47, 87, 182, 64, 141, 157, 140, 77, 77, 188, 176, 76,
        16, 223, 171, 170, 28, 60, 99, 32, 195, 18, 20, 130, 137, 179, 173, 229, 89, 33, 207, 133,
        20, 178, 132, 92, 199, 158, 52, 255, 220, 36, 161, 107, 97, 138, 150, 8, 184, 228, 6, 91,
        223, 163, 16, 152, 185, 41, 235, 135, 137, 21, 15, 170, 212, 248, 211, 245, 73, 113, 243,
        228, 154, 85, 58, 116, 110, 69, 99, 43, 116, 84, 50, 85, 108, 192, 140, 206, 134,
    ];
    assert_eq!(run_ordering(data, 3, true), Ok(()));
}

/// Regression (fuzz finding, `migration_ordering`): a schedule that holds
/// back deliveries while time passes lets every stream die of silence; with
/// a stream's close still in flight the harness used to give the sessions no
/// path, so they ended unreachable. The harness now always heals with a new
/// stream, and the sessions must then complete exactly.
#[test]
fn regression_all_streams_die_of_silence() {
    let data: &[u8] = &[
        42, 191, 4, 120, 36, 22, 137, 202, 39, 175, 187, 150, 208, 57, 153, 247, 57, 119, 223, 91,
        71, 148, 84, 248, 71, 216, 232, 242, 239, 193, 214, 200, 111, 45, 45, 45, 45, 45, 45, 45,
        45, 45, 45, 45, 45, 45, 45, 45, 35, 45, 45, 45, 71, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45,
        45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45,
    ];
    assert_eq!(run_ordering(data, 2, false), Ok(()));
}

/// Regression (fuzz finding, `migration_ordering`): the opener never saw
/// the credit of its Fin.
#[test]
fn regression_opener_never_closes() {
    let data: &[u8] = &[
        1, 0, 0, 0, 39, 0, 1, 0, 0, 1, 0, 100, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45,
        45, 45, 45, 45, 45, 45, 240, 255, 255, 255, 45, 45, 45, 45, 38, 45, 45, 45, 45, 45, 45, 45,
        45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 38, 45, 45, 45, 45, 45,
        45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 0, 1, 1, 255, 255, 255, 1, 254, 254, 0, 90, 0, 254,
        85, 0, 153, 0, 0, 154, 164, 0, 1, 1, 255, 255, 255, 255, 164, 1, 170, 0, 164, 164, 255,
        164, 78, 10, 152, 164, 164, 164, 164, 164, 164,
    ];
    assert_eq!(run_ordering(data, 2, false), Ok(()));
}
