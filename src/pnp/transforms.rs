//! Equivariant plug-and-play: the prior sees the image under a different element of the
//! dihedral group (quarter turns, with and without a mirror) at each iteration, and the returned
//! estimate averages the prior's last outputs.
//!
//! A LoFi denoiser is not rotation-equivariant: its K sample positions sit on fixed angles, so
//! its errors have preferred directions, and ADMM's fixed point accumulates them (the dashed
//! thin lines of inpainting, the diagonal stripes of radio images). Cycling the transforms makes
//! the iteration's effective prior the group average (Terris et al., "Equivariant plug-and-play
//! image reconstruction", CVPR 2024), and averaging the outputs over one cycle is the 8-fold
//! geometric self-ensemble of a denoiser, at no extra cost per iteration.

use tch::Tensor;

use super::ImageShape;

/// Which transforms the prior sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Transforms {
    /// The image as it is, every iteration (the paper's LoFi-ADMM).
    None,
    /// The dihedral group: 8 elements for square images, the 4 that keep the shape (identity,
    /// mirror, half turn, half turn after a mirror) otherwise.
    #[default]
    Dihedral,
}

/// One element of the dihedral group of the square: `turns` quarter turns (counter-clockwise in
/// the (row, column) plane) after a left-right mirror when `mirror`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dihedral {
    pub turns: u8,
    pub mirror: bool,
}

impl Dihedral {
    /// The element used at iteration `k`: a fixed order in which consecutive elements differ by
    /// a mirror or a turn (not identity, then identity again), cycling through the group.
    pub fn at_iteration(k: usize, shape: ImageShape) -> Dihedral {
        let cycle = Self::cycle(shape);
        let (turns, mirror) = cycle[k % cycle.len()];
        Dihedral { turns, mirror }
    }

    /// The elements for `shape`, (turns, mirror) in the order of [`Dihedral::at_iteration`].
    fn cycle(shape: ImageShape) -> &'static [(u8, bool)] {
        const SQUARE: [(u8, bool); 8] =
            [(0, false), (2, true), (1, false), (3, true), (2, false), (0, true), (3, false), (1, true)];
        const OBLONG: [(u8, bool); 4] = [(0, false), (2, true), (2, false), (0, true)];
        if shape.height == shape.width {
            &SQUARE
        } else {
            &OBLONG
        }
    }

    /// Whether this element leaves images as they are.
    pub fn is_identity(&self) -> bool {
        self.turns == 0 && !self.mirror
    }

    /// The number of elements a cycle has for `shape`.
    pub fn cycle_len(shape: ImageShape) -> usize {
        Self::cycle(shape).len()
    }

    /// `t` (.., H, W) under this element.
    pub fn apply(&self, t: &Tensor) -> Tensor {
        let t = if self.mirror { t.flip([-1]) } else { t.shallow_clone() };
        if self.turns == 0 {
            t
        } else {
            t.rot90(self.turns as i64, [-2, -1]).contiguous()
        }
    }

    /// Undoes [`Dihedral::apply`].
    pub fn undo(&self, t: &Tensor) -> Tensor {
        let t = if self.turns == 0 { t.shallow_clone() } else { t.rot90(-(self.turns as i64), [-2, -1]) };
        if self.mirror {
            t.flip([-1])
        } else {
            t.contiguous()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn every_element_is_undone_and_the_cycle_visits_the_whole_group() {
        let square = ImageShape { channels: 2, height: 5, width: 5 };
        let oblong = ImageShape { channels: 2, height: 4, width: 6 };
        for (shape, n) in [(square, 8), (oblong, 4)] {
            let t = Tensor::randn([1, 2, shape.height, shape.width], (Kind::Float, Device::Cpu));
            let mut images = Vec::new();
            for k in 0..n {
                let g = Dihedral::at_iteration(k, shape);
                assert_eq!(g, Dihedral::at_iteration(k + n, shape), "the cycle repeats");
                let moved = g.apply(&t);
                assert_eq!(moved.size(), t.size(), "{g:?} keeps the shape of {shape:?}");
                assert!(g.undo(&moved).equal(&t), "{g:?} is undone");
                images.push(moved);
            }
            // The n elements are n different transforms of a generic image.
            for i in 0..n {
                for j in i + 1..n {
                    assert!(!images[i].equal(&images[j]), "elements {i} and {j} of {shape:?} coincide");
                }
            }
            assert_eq!(Dihedral::cycle_len(shape), n);
        }
        // A quarter turn moves the top-right corner to the top-left.
        let t = Tensor::arange(4, (Kind::Float, Device::Cpu)).view([1, 1, 2, 2]);
        let turned = Dihedral { turns: 1, mirror: false }.apply(&t);
        assert_eq!(Vec::<f32>::try_from(turned.flatten(0, -1)).unwrap(), vec![1.0, 3.0, 0.0, 2.0]);
    }
}
