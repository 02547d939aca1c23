//! `gpu::MatmulTiling::parse` (`RETROPROP_MATMUL`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use retroprop::gpu::MatmulTiling;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(tiling) = MatmulTiling::parse(text) {
        assert!(tiling.wg_x * tiling.wg_y <= 1024, "{text}: {tiling:?}");
        assert!(tiling.tile_m() >= 1 && tiling.tile_n() >= 1);
    }
});
