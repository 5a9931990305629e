//! `--precision`: f32 never runs a reduced kernel; mixed takes the best mode the adapter has
//! whose self-check passes, says which and why, and falls back (with a warning) when a
//! mode's self-check fails.

use super::*;

fn backend(g: Gpu, model: &Model) -> GpuBackend {
    let mut b = pollster::block_on(GpuBackend::with_plan(
        g,
        model.plan.clone(),
        &model.weights.tensors,
    ))
    .unwrap();
    b.set_tuning(Tune::Off, None);
    b
}

/// What the adapter's mixed mode should be, by its features alone.
fn best_mixed(g: &Gpu) -> Arith {
    let props = g.adapter.cooperative_matrix_properties();
    if coop_unavailable(g.features, &props, &g.info).is_none() {
        Arith::Coop
    } else if g.features.contains(wgpu::Features::SHADER_F16) {
        Arith::F16
    } else {
        Arith::F32
    }
}

#[test]
fn mixed_takes_the_best_mode_that_passes_its_self_check() {
    let Some(g) = gpu() else { return };
    let model = shipped_model();
    let best = best_mixed(&g);
    let mut b = backend(g, &model);

    pollster::block_on(b.set_precision(Precision::F32)).unwrap();
    assert_eq!(b.arith(), Arith::F32);
    assert!(b.notes().is_empty());

    pollster::block_on(b.set_precision(Precision::Mixed)).unwrap();
    let notes = b.notes().join("\n");
    eprintln!("{notes}");
    assert_eq!(b.arith(), best, "{notes}");
    if best != Arith::F32 {
        assert!(
            notes.contains(best.name()) && notes.contains("self-check"),
            "{notes}"
        );
        assert!(b.describe().contains(best.name()));
    }
    if best == Arith::F16 {
        assert!(notes.contains("no cooperative matrices"), "{notes}");
    }

    // The same, with the sample's ε compared end to end: the mixed result stays close.
    let x = Tensor::new(vec![2, 3, 32, 32], randn(7, 0, 2 * 3 * 32 * 32)).unwrap();
    let mixed = b.forward(&x, &[999.0, 10.0]).unwrap();
    pollster::block_on(b.set_precision(Precision::F32)).unwrap();
    let full = b.forward(&x, &[999.0, 10.0]).unwrap();
    let e = max_rel(&mixed.data, &full.data);
    eprintln!("mixed ({}) against f32: ε rel {e:.2e}", best.name());
    assert!(e <= 2e-2, "{e}");
}

#[test]
fn a_failed_self_check_falls_back_and_says_so() {
    let Some(g) = gpu() else { return };
    let model = shipped_model();
    let best = best_mixed(&g);
    if best == Arith::F32 {
        eprintln!("skipped: no reduced mode on this adapter to fail");
        return;
    }
    let mut b = backend(g, &model);
    b.break_self_check(Some(best));
    pollster::block_on(b.set_precision(Precision::Mixed)).unwrap();
    let notes = b.notes().join("\n");
    eprintln!("{notes}");
    assert_ne!(b.arith(), best);
    assert!(
        notes.contains(&format!("warning: {} failed its self-check", best.name())),
        "{notes}"
    );
    // Whatever ran instead is one of the modes below it, and it works.
    let x = Tensor::new(vec![1, 3, 32, 32], randn(7, 1, 3 * 32 * 32)).unwrap();
    let got = b.forward(&x, &[500.0]).unwrap();
    assert!(got.data.iter().all(|v| v.is_finite()));
}
