//! Arbitrary bytes as an input image (`.npy`, PNG, TIFF; the first byte picks the format), read
//! through `lofi::image_io::read` (the readers work on files: the bytes go to a file in /dev/shm
//! when it exists). A clean error or a finite image of the stated shape; any panic is a finding.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("lofi-fuzz-images-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let ext = ["npy", "png", "tif"][pick as usize % 3];
    let path = dir().join(format!("input.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    if let Ok(img) = lofi::image_io::read(&path) {
        assert_eq!(img.data.len(), img.height * img.width * img.channels);
        assert!(img.data.iter().all(|v| v.is_finite()));
    }
});
