//! Geometric self-ensemble in sample space: the mean of the network's outputs over quarter
//! turns and mirrors of the image, computed without turning the image.
//!
//! A LoFi network samples on fixed directions, so its small errors have preferred directions, and
//! averaging its outputs over the dihedral group of the image (the classic x8 self-ensemble of
//! image restoration) removes them (Set12 denoising: +0.1 dB). Turning the image is a whole-image
//! copy that a streamed, region or point reconstruction cannot make; it is not needed either:
//! sampling a turned image around the turned target is sampling the image itself at the turned
//! *offsets* around the target. Bicubic sampling with align-corners reflection is symmetric
//! under the dihedral group of the pixel grid, and the resolution scale (S/H for rows, S/W for
//! columns) applies after the turn: a row offset of the turned image is a column offset of this
//! one, scaled by this image's width, as the turned image's would be by its height. So every
//! element works on oblong images too, and the mean over a subgroup equals the image-space
//! ensemble up to float rounding (`tests/self_ensemble.rs`).
//!
//! The Fourier filter is global and not symmetric (it would have to turn as well), and CCPG and
//! INR-LoFi predict their geometry from the samples, so those models refuse an ensemble.

use tch::Tensor;

use crate::error::{Error, Result};

/// Which outputs are averaged: a subgroup of the dihedral group of the square, applied to the
/// sampling offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SelfEnsemble {
    /// One pass, the network as trained.
    #[default]
    Off,
    /// The image and its half turn (2 passes).
    HalfTurn,
    /// The four quarter turns (4 passes).
    QuarterTurns,
    /// Quarter turns and mirrors: the whole dihedral group (8 passes).
    Dihedral,
}

/// One element of the group acting on a (row, column) offset: the components swapped or not, then
/// each multiplied by its sign. Exact in floating point (a copy and sign flips).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetTransform {
    pub swap: bool,
    pub row_sign: i8,
    pub col_sign: i8,
}

const fn element(swap: bool, row_sign: i8, col_sign: i8) -> OffsetTransform {
    OffsetTransform { swap, row_sign, col_sign }
}

/// The group in an order whose prefixes of 1, 2 and 4 are the subgroups above: identity, half
/// turn, the two quarter turns, then the four mirrors (two axis mirrors, two diagonal ones).
const DIHEDRAL: [OffsetTransform; 8] = [
    element(false, 1, 1),
    element(false, -1, -1),
    element(true, 1, -1),
    element(true, -1, 1),
    element(false, -1, 1),
    element(false, 1, -1),
    element(true, 1, 1),
    element(true, -1, -1),
];

impl SelfEnsemble {
    /// From a number of passes, as the command line and the C API give it: 0 or 1 (off), 2, 4
    /// or 8.
    pub fn from_passes(passes: u64) -> Result<SelfEnsemble> {
        match passes {
            0 | 1 => Ok(SelfEnsemble::Off),
            2 => Ok(SelfEnsemble::HalfTurn),
            4 => Ok(SelfEnsemble::QuarterTurns),
            8 => Ok(SelfEnsemble::Dihedral),
            n => Err(Error::invalid_argument(format!(
                "self-ensemble of {n} passes: use 1 (off), 2 (half turn), 4 (quarter turns) or 8 (quarter \
                 turns and mirrors)"
            ))),
        }
    }

    /// Network passes per output value.
    pub fn passes(self) -> usize {
        match self {
            SelfEnsemble::Off => 1,
            SelfEnsemble::HalfTurn => 2,
            SelfEnsemble::QuarterTurns => 4,
            SelfEnsemble::Dihedral => 8,
        }
    }

    /// The group elements averaged, the identity first.
    pub fn elements(self) -> &'static [OffsetTransform] {
        &DIHEDRAL[..self.passes()]
    }
}

impl OffsetTransform {
    /// Whether offsets stay as they are.
    pub fn is_identity(&self) -> bool {
        *self == DIHEDRAL[0]
    }

    /// `offsets` (..., 2) in (row, column) order under this element.
    pub fn apply(&self, offsets: &Tensor) -> Tensor {
        if self.is_identity() {
            return offsets.shallow_clone();
        }
        let (row, col) = (offsets.select(-1, 0), offsets.select(-1, 1));
        let (row, col) = if self.swap { (col, row) } else { (row, col) };
        let signed = |t: Tensor, sign: i8| if sign < 0 { -t } else { t };
        Tensor::stack(&[signed(row, self.row_sign), signed(col, self.col_sign)], -1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The prefixes are groups (closed under composition), the whole list has no repeats, and an
    /// element moves offsets exactly as described.
    #[test]
    fn the_prefixes_are_subgroups() {
        let v = Tensor::from_slice(&[0.25f32, -0.5]).view([1, 2]);
        let image_of = |t: &OffsetTransform, v: &Tensor| -> Vec<f32> {
            Vec::<f32>::try_from(t.apply(v).view([-1])).unwrap()
        };
        for e in
            [SelfEnsemble::Off, SelfEnsemble::HalfTurn, SelfEnsemble::QuarterTurns, SelfEnsemble::Dihedral]
        {
            let images: Vec<Vec<f32>> = e.elements().iter().map(|t| image_of(t, &v)).collect();
            for a in e.elements() {
                for b in e.elements() {
                    let composed = image_of(a, &b.apply(&v));
                    assert!(images.contains(&composed), "{e:?} is not closed: {a:?} after {b:?}");
                }
            }
            let mut unique = images.clone();
            unique.sort_by(|x, y| x.partial_cmp(y).unwrap());
            unique.dedup();
            assert_eq!(unique.len(), e.passes(), "{e:?} repeats an element");
            assert_eq!(SelfEnsemble::from_passes(e.passes() as u64).unwrap(), e);
        }
        assert_eq!(image_of(&DIHEDRAL[2], &v), vec![-0.5, -0.25]);
        // The half turn keeps the axes; the quarter turns swap them.
        assert!(!SelfEnsemble::HalfTurn.elements().iter().any(|t| t.swap));
        assert!(SelfEnsemble::QuarterTurns.elements().iter().any(|t| t.swap));
        assert!(SelfEnsemble::from_passes(3).is_err());
        assert_eq!(SelfEnsemble::from_passes(0).unwrap(), SelfEnsemble::Off);
        let t = Tensor::randn([3, 4, 2], (Kind::Float, Device::Cpu));
        assert!(DIHEDRAL[0].apply(&t).equal(&t));
    }
}
