//! A plain host tensor: f32 values in row-major (NCHW) order with their shape.

use crate::error::{Error, Result};

/// Model space to 8 bits: (x + 1)/2 clamped to [0, 1], ×255, rounded (the official
/// `save_image` convention).
pub fn to_u8(x: f32) -> u8 {
    (((x + 1.0) * 0.5).clamp(0.0, 1.0) * 255.0).round() as u8
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Shape {
                what: "tensor data".into(),
                expected: shape,
                found: vec![data.len()],
            });
        }
        Ok(Tensor { shape, data })
    }

    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Tensor {
            shape,
            data: vec![0.0; n],
        }
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Elements per item of the leading (batch) dimension.
    pub fn item_len(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// Items `a..b` along the leading dimension.
    pub fn slice_batch(&self, a: usize, b: usize) -> Tensor {
        let k = self.item_len();
        let mut shape = self.shape.clone();
        shape[0] = b - a;
        Tensor {
            shape,
            data: self.data[a * k..b * k].to_vec(),
        }
    }

    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, x| m.max(x.abs()))
    }

    /// max |self − other|, or an error when the shapes differ.
    pub fn max_abs_diff(&self, other: &Tensor) -> Result<f32> {
        if self.shape != other.shape {
            return Err(Error::Shape {
                what: "comparison".into(),
                expected: self.shape.clone(),
                found: other.shape.clone(),
            });
        }
        Ok(self
            .data
            .iter()
            .zip(&other.data)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs())))
    }
}
