//! The learned Fourier noise-suppression filter, applied once to the whole input image.

use tch::{Kind, Tensor};

use crate::config::{LofiConfig, FILTER_PAD};

/// Filters `x` (B, C, H, W) and returns (B, C', H, W): Re(filtered) (c_f channels),
/// Im(filtered) (c_f), then the raw input (C).
///
/// `filter` is the stored parameter (1, c_f, S+10, S+10, 2), complex as a trailing (re, im) axis.
pub fn apply_filter(cfg: &LofiConfig, filter: &Tensor, x: &Tensor) -> Tensor {
    let (_, c, h, w) = x.size4().expect("image is (B, C, H, W)");
    let x = x.to_kind(Kind::Float);
    let pad = FILTER_PAD;
    let padded = x.constant_pad_nd([pad, pad, pad, pad]);
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    let signal = if c == 2 {
        // Two channels are one complex field q0 + i q1.
        Tensor::complex(&padded.narrow(1, 0, 1), &padded.narrow(1, 1, 1))
    } else {
        padded
    };
    let spectrum = signal.fft_fft2(None::<&[i64]>, [-2, -1], "forward");

    let c_f = cfg.filter_channels();
    let size = cfg.filter_size();
    let response = if size != hp || size != wp {
        // Resize real and imaginary parts separately (bicubic, align_corners=False); no fftshift:
        // index (0, 0) stays the DC term, as in the reference.
        let planes = filter.permute([0, 4, 1, 2, 3]).reshape([1, 2 * c_f, size, size]);
        let resized = planes.upsample_bicubic2d([hp, wp], false, None, None).view([1, 2, c_f, hp, wp]);
        Tensor::complex(&resized.select(1, 0), &resized.select(1, 1))
    } else {
        filter.view_as_complex()
    };
    let repeats = c_f / cfg.spectrum_channels();
    let filtered = (spectrum.repeat([1, repeats, 1, 1]) * response)
        .fft_ifft2(None::<&[i64]>, [-2, -1], "forward")
        // The reference crops [hp/2 - H/2, hp/2 + H/2), which loses a row for odd H; [pad, pad+H)
        // agrees with it for even sizes and is right for odd ones.
        .narrow(2, pad, h)
        .narrow(3, pad, w);
    Tensor::cat(&[filtered.real(), filtered.imag(), x], 1)
}
