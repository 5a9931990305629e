//! `ddim`: sample, interpolate, reconstruct and inspect DDPM UNet checkpoints with DDIM.

mod bench;
mod builtin;
mod common;
mod convert;
mod eval;
mod folder;
mod info;
mod interpolate;
mod manifest;
mod output;
mod pack;
mod progress;
mod reconstruct;
mod sample;
mod schedule;
mod serve;
mod shard;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ddim",
    version,
    about = "DDIM sampling for the DDPM UNet (ermongroup/ddim, diffusers UNet2DModel)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a beta schedule and its derived values (and a timestep sequence).
    Schedule(schedule::Args),
    /// Generate samples.
    Sample(sample::Args),
    /// Slerp between the x_T of two seeds and decode every frame.
    Interpolate(interpolate::Args),
    /// Encode images to x_T with the reversed DDIM ODE, then decode them again.
    Reconstruct(reconstruct::Args),
    /// Pack a finished sample folder (all shards) into one .npz for FID tools.
    Pack(pack::Args),
    /// Describe a model (parameters, FLOPs, tensors) or the compute devices.
    Info(info::Args),
    /// Write any weights we read (a PyTorch checkpoint, say) as safetensors with official names.
    Convert(convert::Args),
    /// Time the network's forward pass on random weights.
    Bench(bench::Args),
    /// Sample quality (SWD) against the training images over steps × η × skip.
    Eval(eval::Args),
    /// Serve the web page and the wasm package on 127.0.0.1.
    Serve(serve::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Schedule(a) => schedule::run(a),
        Cmd::Sample(a) => sample::run(a),
        Cmd::Interpolate(a) => interpolate::run(a),
        Cmd::Reconstruct(a) => reconstruct::run(a),
        Cmd::Info(a) => info::run(a),
        Cmd::Pack(a) => pack::run(a),
        Cmd::Convert(a) => convert::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Serve(a) => serve::run(a),
        Cmd::Eval(a) => eval::run(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// 2 for anything the user can fix (bad file, key, value); 130 when cancelled; else 1.
fn exit_code(e: &anyhow::Error) -> u8 {
    use ddim_webgpu::Error as E;
    match e.downcast_ref::<E>() {
        Some(E::Backend(_)) => 1,
        Some(E::Cancelled) => 130,
        Some(_) => 2,
        None => 1,
    }
}
