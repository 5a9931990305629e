//! The twin harness: one op on hand-made slots, run by both backends, compared.

use super::*;

/// One op over hand-made slots; every slot the op reads is filled with noise, and the slot it
/// writes is compared between the two backends.
pub fn twin(
    gpu: Gpu,
    what: &str,
    slots: Vec<Slot>,
    params: Vec<Vec<usize>>,
    op: Op,
    n: usize,
    tol: f32,
) -> Gpu {
    twin_with(gpu, what, slots, params, op, n, tol, None, false)
}

/// `twin`, with the convolution kernel forced (None: the adapter's default), and optionally
/// with every weight rounded to f16 (so the GPU may store them as f16, losslessly).
#[allow(clippy::too_many_arguments)]
pub fn twin_with(
    gpu: Gpu,
    what: &str,
    slots: Vec<Slot>,
    params: Vec<Vec<usize>>,
    op: Op,
    n: usize,
    tol: f32,
    conv: Option<ConvVariant>,
    f16: bool,
) -> Gpu {
    let out = op.writes()[0];
    let params: Vec<Param> = params
        .into_iter()
        .enumerate()
        .map(|(i, shape)| Param {
            name: format!("p{i}"),
            shape,
        })
        .collect();
    let weights: Vec<Tensor> = params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let numel: usize = p.shape.iter().product();
            let fan = p
                .shape
                .get(1..)
                .map_or(1, |s| s.iter().product::<usize>())
                .max(1);
            let v = randn(5, 1000 + i as u32, numel)
                .iter()
                .map(|x| x / (fan as f32).sqrt())
                .map(|x| {
                    if f16 {
                        half::f16::from_f32(x).to_f32()
                    } else {
                        x
                    }
                })
                .collect();
            Tensor::new(p.shape.clone(), v).unwrap()
        })
        .collect();
    let plan = Plan {
        config: dummy_config(),
        params,
        slots: slots.clone(),
        ops: vec![op.clone()],
        input: 0,
        temb: 0,
        output: out,
    };
    let inputs: Vec<(usize, Vec<f32>)> = op
        .reads()
        .into_iter()
        .map(|s| (s, randn(5, s as u32, slots[s].len() * n)))
        .collect();
    let refs: Vec<(usize, &[f32])> = inputs.iter().map(|(s, v)| (*s, v.as_slice())).collect();
    let want = CpuBackend::with_plan(plan.clone(), weights.clone()).execute(n, &refs, out);
    let has_f16 = gpu.features.contains(wgpu::Features::SHADER_F16);
    let mut g = pollster::block_on(GpuBackend::with_plan(gpu, plan, &weights)).unwrap();
    let is_conv = matches!(op, Op::Conv { .. });
    assert_eq!(
        g.half_weights(),
        f16 && has_f16 && is_conv,
        "{what}: f16 weights"
    );
    if let Some(v) = conv {
        g.force_arith(v.arith());
    }
    g.set_conv(conv);
    let got = pollster::block_on(g.execute(n, &refs, out)).unwrap();
    // Compare only the channels the op wrote.
    let View { c_off, c, .. } = match op {
        Op::Conv { y, .. }
        | Op::GroupNorm { y, .. }
        | Op::Attention { y, .. }
        | Op::AvgPool { y, .. }
        | Op::Upsample { y, .. } => y,
        Op::Linear { y, .. } => View {
            slot: y,
            c_off: 0,
            c: slots[y].len(),
        },
    };
    let (h, w) = slots[out].hw();
    let per = slots[out].len();
    for i in 0..n {
        let r = i * per + c_off * h * w..i * per + (c_off + c) * h * w;
        let e = max_rel(&got[r.clone()], &want[r]);
        assert!(e <= tol, "{what}: image {i}: rel err {e:e}");
    }
    eprintln!("{what}: ok");
    g.into_gpu()
}

pub fn map(c: usize, h: usize, w: usize) -> Slot {
    Slot::Map { c, h, w }
}

/// A conv as the skip concatenation uses it: reading channels 2.. of a wider slot, writing
/// channels 3.. of another, with a temb vector and a residual. Slot 2 is the output's size.
pub fn offset_conv(
    ci: usize,
    co: usize,
    h: usize,
    w: usize,
    k: usize,
    r: Resample,
) -> (Vec<Slot>, Op) {
    let (ho, wo) = match r {
        Resample::Up => (2 * h, 2 * w),
        Resample::Down => (h / 2, w / 2),
        Resample::None => (h, w),
    };
    let slots = vec![
        map(ci + 2, h, w),
        Slot::Vector { len: co },
        map(co, ho, wo),
        map(co + 3, ho, wo),
    ];
    let op = Op::Conv {
        x: View {
            slot: 0,
            c_off: 2,
            c: ci,
        },
        y: View {
            slot: 3,
            c_off: 3,
            c: co,
        },
        w: 0,
        b: 1,
        k,
        resample: r,
        temb: Some(1),
        residual: Some(View {
            slot: 2,
            c_off: 0,
            c: co,
        }),
    };
    (slots, op)
}

/// Every variant the tuner may pick for a conv of this shape on this adapter, in f32.
pub fn offered(g: &Gpu, op: &Op, slots: &[Slot], n: usize) -> Vec<ConvVariant> {
    offered_in(g, op, slots, n, Arith::F32)
}

/// The reduced-precision variants the mixed mode adds on this adapter: the tensor-core ones
/// where it has cooperative matrices, the f16-arithmetic ones where it has shader-f16.
pub fn offered_mixed(g: &Gpu, op: &Op, slots: &[Slot], n: usize) -> Vec<ConvVariant> {
    let props = g.adapter.cooperative_matrix_properties();
    let arith = if coop_unavailable(g.features, &props, &g.info).is_none() {
        Arith::Coop
    } else if g.features.contains(wgpu::Features::SHADER_F16) {
        Arith::F16
    } else {
        return vec![];
    };
    offered_in(g, op, slots, n, arith)
        .into_iter()
        .filter(|v| v.arith() != Arith::F32)
        .collect()
}

fn offered_in(g: &Gpu, op: &Op, slots: &[Slot], n: usize, arith: Arith) -> Vec<ConvVariant> {
    let plan = Plan {
        config: dummy_config(),
        params: vec![],
        slots: slots.to_vec(),
        ops: vec![op.clone()],
        input: 0,
        temb: 0,
        output: 0,
    };
    let shape = ConvShape::of(&plan, op, n).unwrap();
    variants(&shape, &g.limits, arith, fixed_subgroup(&g.info))
}
