//! The model's configuration: the reference constructor's keyword arguments, plus the few widths
//! the reference hard-codes. Serialised as JSON inside every `.lofi` file.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which network maps a pixel's samples to its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// One MLP per angle, then a mixer MLP (the paper's network).
    MultiMLP,
    /// One MLP over all samples.
    MLP,
}

/// Initial layout of the K = N x M sampling offsets around a pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchShape {
    /// N rings x M angles, ring 0 on the pixel itself (the paper's default).
    Round,
    /// An N x M square grid of one-pixel steps.
    Square,
    /// Uniformly random offsets within N pixels.
    Random,
}

impl PatchShape {
    /// Index (ring, angle) of the sample that sits on the target pixel itself.
    pub fn centre(self, n: i64, m: i64) -> (i64, i64) {
        match self {
            PatchShape::Round | PatchShape::Random => (0, 0),
            PatchShape::Square => (n / 2, m / 2),
        }
    }
}

fn default_angle_features() -> i64 {
    100
}
fn default_ccpg_hidden_dim() -> i64 {
    128
}
fn default_inr_hidden_dim() -> i64 {
    256
}
fn default_aux_layers() -> i64 {
    3
}

/// How a noise-level-aware model takes the noise level (FFDNet/DRUNet's noise map): a constant
/// channel holding sigma is appended to every pixel's samples, after sampling (a constant map
/// sampled bicubically is the same constant, so it is not sampled at all). Not in the reference.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseLevelInput {
    /// Lowest noise standard deviation seen in training (image units, [0, 1] images).
    pub sigma_min: f64,
    /// Highest noise standard deviation seen in training.
    pub sigma_max: f64,
}

impl NoiseLevelInput {
    /// Checks a caller's sigma: finite and non-negative. Values outside the training range are
    /// allowed (the model extrapolates) and reported by the caller's log.
    pub fn check(&self, sigma: f64) -> Result<()> {
        if !(sigma.is_finite() && sigma >= 0.0) {
            return Err(Error::invalid_argument(format!(
                "the noise level sigma = {sigma} must be a finite, non-negative standard deviation"
            )));
        }
        if sigma < self.sigma_min - 1e-9 || sigma > self.sigma_max + 1e-9 {
            log::warn!(
                "noise level sigma = {sigma} is outside the model's training range [{}, {}]",
                self.sigma_min,
                self.sigma_max
            );
        }
        Ok(())
    }
}

/// The LoFi model's configuration. Field names (in JSON) are the reference constructor's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LofiConfig {
    /// Training resolution S: the offsets are defined in units of 1/S.
    pub image_size: i64,
    /// Input channels (2 means one complex channel, real and imaginary parts).
    pub c_in: i64,
    /// Output channels.
    pub c_out: i64,
    pub network: Network,
    /// Width of every hidden layer.
    pub hidden_dim: i64,
    /// Number of hidden layers of every MLP.
    pub num_layers: i64,
    pub patch_shape: PatchShape,
    /// Learned Fourier noise-suppression filter applied to the whole input first.
    pub fourier_filtering: bool,
    /// Initial receptive-field scale (`patch_scale`).
    pub recep_scale: f64,
    /// Output = centre sample minus the network's output.
    pub residual_learning: bool,
    /// Whether the base patch geometry is trained.
    pub learned_geo: bool,
    /// Rings.
    #[serde(rename = "N")]
    pub n: i64,
    /// Angles.
    #[serde(rename = "M")]
    pub m: i64,
    /// Coordinate-conditioned patch geometry.
    #[serde(rename = "CCPG")]
    pub ccpg: bool,
    /// Filters per input channel.
    pub num_filters: i64,
    /// CCPG blocks T.
    pub n_deform: i64,
    /// INR-LoFi: a learned coordinate transform before sampling.
    pub coord_deform: bool,
    /// Features each per-angle MLP hands to the mixer (hard-coded to 100 in the reference).
    #[serde(default = "default_angle_features")]
    pub angle_features: i64,
    /// Hidden width of the CCPG blocks (128 in the reference's intent).
    #[serde(default = "default_ccpg_hidden_dim")]
    pub ccpg_hidden_dim: i64,
    /// Hidden width of the INR coordinate network (256 in the reference).
    #[serde(default = "default_inr_hidden_dim")]
    pub inr_hidden_dim: i64,
    /// Hidden layers of the CCPG and INR networks (3 in the reference).
    #[serde(default = "default_aux_layers")]
    pub aux_layers: i64,
    /// Noise-level conditioning (absent: the model denoises at the one level it was trained on,
    /// and refuses a sigma). Not a reference key; omitted from the JSON when absent, so older
    /// files keep their bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_level: Option<NoiseLevelInput>,
}

impl Default for LofiConfig {
    /// The reference constructor's defaults.
    fn default() -> Self {
        LofiConfig {
            image_size: 128,
            c_in: 3,
            c_out: 3,
            network: Network::MLP,
            hidden_dim: 256,
            num_layers: 3,
            patch_shape: PatchShape::Round,
            fourier_filtering: true,
            recep_scale: 1.0,
            residual_learning: false,
            learned_geo: true,
            n: 9,
            m: 9,
            ccpg: false,
            num_filters: 1,
            n_deform: 1,
            coord_deform: false,
            angle_features: default_angle_features(),
            ccpg_hidden_dim: default_ccpg_hidden_dim(),
            inr_hidden_dim: default_inr_hidden_dim(),
            aux_layers: default_aux_layers(),
            noise_level: None,
        }
    }
}

/// Zero padding added on every side before the filter's FFT (the reference's `pad_size`).
pub const FILTER_PAD: i64 = 5;

impl LofiConfig {
    /// The paper's configuration (MultiMLP, 9 x 9, 3 hidden layers of 370) for `c` channels.
    pub fn paper(image_size: i64, c_in: i64, c_out: i64) -> Self {
        LofiConfig {
            image_size,
            c_in,
            c_out,
            network: Network::MultiMLP,
            hidden_dim: 370,
            ..Default::default()
        }
    }

    /// Parses the reference constructor's keyword arguments (JSON object). Missing keys take
    /// the reference's defaults; unknown keys are an error.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: LofiConfig = serde_json::from_str(text)
            .map_err(|e| Error::invalid_model(format!("bad configuration JSON: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("configuration serialises")
    }

    /// Checks every field for a value the model can be built with.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::invalid_model(format!("invalid configuration: {what}")));
        let positive = [
            ("image_size", self.image_size, 2, 1 << 16),
            ("c_in", self.c_in, 1, 64),
            ("c_out", self.c_out, 1, 64),
            ("hidden_dim", self.hidden_dim, 1, 1 << 16),
            ("num_layers", self.num_layers, 0, 64),
            ("N", self.n, 1, 64),
            ("M", self.m, 1, 64),
            ("num_filters", self.num_filters, 1, 64),
            ("n_deform", self.n_deform, 1, 64),
            ("angle_features", self.angle_features, 1, 1 << 16),
            ("ccpg_hidden_dim", self.ccpg_hidden_dim, 1, 1 << 16),
            ("inr_hidden_dim", self.inr_hidden_dim, 1, 1 << 16),
            ("aux_layers", self.aux_layers, 0, 64),
        ];
        for (name, value, lo, hi) in positive {
            if value < lo || value > hi {
                return bad(format!("{name} = {value} is outside [{lo}, {hi}]"));
            }
        }
        if self.residual_learning && self.patch_shape == PatchShape::Random {
            return bad(
                "residual_learning needs a centre sample, which the random geometry does not have".into()
            );
        }
        if !self.recep_scale.is_finite() {
            return bad(format!("recep_scale = {} is not finite", self.recep_scale));
        }
        if let Some(nl) = &self.noise_level {
            if !(nl.sigma_min.is_finite()
                && nl.sigma_max.is_finite()
                && 0.0 <= nl.sigma_min
                && nl.sigma_min <= nl.sigma_max)
            {
                return bad(format!(
                    "noise_level range [{}, {}] must satisfy 0 <= sigma_min <= sigma_max",
                    nl.sigma_min, nl.sigma_max
                ));
            }
        }
        Ok(())
    }

    /// Channels the network sees per sample (C'): the filter adds Re and Im of every filtered
    /// channel in front of the raw input.
    pub fn sampled_channels(&self) -> i64 {
        if self.fourier_filtering {
            2 * self.filter_channels() + self.c_in
        } else {
            self.c_in
        }
    }

    /// Channels the network sees per sample: the sampled channels plus the noise-level channel of
    /// a noise-aware model.
    pub fn network_channels(&self) -> i64 {
        self.sampled_channels() + i64::from(self.noise_level.is_some())
    }

    /// Number of complex filters c_f. A 2-channel input is one complex channel.
    pub fn filter_channels(&self) -> i64 {
        if self.c_in == 2 {
            self.num_filters
        } else {
            self.num_filters * self.c_in
        }
    }

    /// Spectrum channels before the filters are applied.
    pub fn spectrum_channels(&self) -> i64 {
        if self.c_in == 2 {
            1
        } else {
            self.c_in
        }
    }

    /// Side of the stored filter: the training size plus the padding on both sides.
    pub fn filter_size(&self) -> i64 {
        self.image_size + 2 * FILTER_PAD
    }

    /// Samples per pixel K.
    pub fn samples_per_pixel(&self) -> i64 {
        self.n * self.m
    }
}
