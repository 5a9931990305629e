//! Where a forward pass spends its time, per op and per kernel family: what both backends'
//! profilers report and `ddim bench --profile` prints.

/// Time and work of one op (or dispatch), or of a kernel family summed over a forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTime {
    pub family: &'static str,
    pub layer: String,
    pub variant: String,
    pub dispatches: usize,
    pub ms: f64,
    pub gflop: f64,
}

impl LayerTime {
    pub fn gflops(&self) -> Option<f64> {
        (self.gflop > 0.0 && self.ms > 0.0).then(|| self.gflop / (self.ms / 1e3))
    }
}

/// Per-family totals of a per-dispatch profile, largest first.
pub fn by_family(layers: &[LayerTime]) -> Vec<LayerTime> {
    let mut fams: Vec<LayerTime> = Vec::new();
    for l in layers {
        match fams.iter_mut().find(|f| f.family == l.family) {
            Some(f) => {
                f.dispatches += 1;
                f.ms += l.ms;
                f.gflop += l.gflop;
            }
            None => fams.push(LayerTime {
                layer: String::new(),
                variant: String::new(),
                dispatches: 1,
                ..l.clone()
            }),
        }
    }
    fams.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    fams
}
