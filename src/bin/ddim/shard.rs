//! Which part of a folder run this process does: `--shard I/N` given by hand, or `--shard auto`
//! read from the job engine that started it (SLURM and AWS Batch job arrays, Kubernetes
//! Indexed Jobs, torchrun and MPI launchers).
//!
//! Shards split the run at global batch boundaries: batch k is always samples
//! `k·B .. (k+1)·B` whatever the split, so each shard computes exactly the batches a single
//! run would, and the union of the shards is that run, byte for byte.

use ddim_webgpu::Error;
use std::ops::Range;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
    /// Where the numbers came from, for the log line.
    pub source: String,
}

fn bad(why: impl Into<String>) -> Error {
    Error::invalid("shard", why)
}

fn number(name: &str, v: &str) -> Result<usize, Error> {
    v.trim()
        .parse()
        .map_err(|_| bad(format!("{name}={v:?} is not a non-negative integer")))
}

impl Shard {
    pub fn whole() -> Self {
        Shard {
            index: 0,
            count: 1,
            source: "one process".into(),
        }
    }

    fn checked(index: usize, count: usize, source: String) -> Result<Self, Error> {
        if count == 0 {
            return Err(bad(format!("{source}: the shard count must be at least 1")));
        }
        if index >= count {
            return Err(bad(format!(
                "{source}: shard index {index} is out of range for {count} shards (0..{})",
                count - 1
            )));
        }
        Ok(Shard {
            index,
            count,
            source,
        })
    }

    /// `I/N`, or `auto` (read with `env`); `shards` is `--shards N`, the count for engines
    /// that do not say it (Kubernetes), and a check against those that do.
    pub fn parse(
        spec: &str,
        shards: Option<usize>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        if spec == "auto" {
            return Self::from_env(shards, env);
        }
        let (i, n) = spec
            .split_once('/')
            .ok_or_else(|| bad(format!("{spec:?}: use I/N (I from 0) or auto")))?;
        let s = Self::checked(number("I", i)?, number("N", n)?, format!("--shard {spec}"))?;
        match shards {
            Some(k) if k != s.count => Err(bad(format!(
                "--shard {spec} and --shards {k} disagree on the count"
            ))),
            _ => Ok(s),
        }
    }

    /// The first engine whose variables are set, in this order: SLURM array, Kubernetes
    /// Indexed Job, AWS Batch array, RANK/WORLD_SIZE.
    fn from_env(
        shards: Option<usize>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let need =
            |k: &str, engine: &str| get(k).ok_or_else(|| bad(format!("{engine}: {k} is not set")));
        let with_count = |index: usize, count: Option<usize>, source: String| {
            let count = match (count, shards) {
                (Some(c), Some(k)) if c != k => {
                    return Err(bad(format!(
                        "{source} gives {c} shards but --shards says {k}"
                    )))
                }
                (Some(c), _) | (None, Some(c)) => c,
                (None, None) => {
                    return Err(bad(format!(
                        "{source} does not give the shard count: pass --shards N"
                    )))
                }
            };
            Self::checked(index, count, source)
        };
        if let Some(id) = get("SLURM_ARRAY_TASK_ID") {
            let e = "SLURM job array";
            let step = get("SLURM_ARRAY_TASK_STEP").unwrap_or_else(|| "1".into());
            if number("SLURM_ARRAY_TASK_STEP", &step)? != 1 {
                return Err(bad(format!(
                    "{e}: SLURM_ARRAY_TASK_STEP={step}; use an array with step 1 (e.g. --array=0-9)"
                )));
            }
            let id = number("SLURM_ARRAY_TASK_ID", &id)?;
            let min = number("SLURM_ARRAY_TASK_MIN", &need("SLURM_ARRAY_TASK_MIN", e)?)?;
            let count = number(
                "SLURM_ARRAY_TASK_COUNT",
                &need("SLURM_ARRAY_TASK_COUNT", e)?,
            )?;
            // A list like --array=0,2,4 has MIN 0 and COUNT 3 but IDs up to 4: refuse it here
            // rather than as an index out of range on some of its tasks.
            if let Some(max) = get("SLURM_ARRAY_TASK_MAX") {
                let max = number("SLURM_ARRAY_TASK_MAX", &max)?;
                if max.checked_sub(min).map(|d| d + 1) != Some(count) {
                    return Err(bad(format!(
                        "{e}: SLURM_ARRAY_TASK_MIN={min}, SLURM_ARRAY_TASK_MAX={max} and \
                         SLURM_ARRAY_TASK_COUNT={count} are not a contiguous range; use \
                         --array=A-B"
                    )));
                }
            }
            let index = id.checked_sub(min).ok_or_else(|| {
                bad(format!(
                    "{e}: SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"
                ))
            })?;
            let src = format!(
                "{e} (SLURM_ARRAY_TASK_ID={id} - SLURM_ARRAY_TASK_MIN={min}, SLURM_ARRAY_TASK_COUNT={count})"
            );
            return with_count(index, Some(count), src);
        }
        if let Some(i) = get("JOB_COMPLETION_INDEX") {
            let i = number("JOB_COMPLETION_INDEX", &i)?;
            let src = format!("Kubernetes Indexed Job (JOB_COMPLETION_INDEX={i}, --shards)");
            return with_count(i, None, src);
        }
        if let Some(i) = get("AWS_BATCH_JOB_ARRAY_INDEX") {
            let e = "AWS Batch array job";
            let i = number("AWS_BATCH_JOB_ARRAY_INDEX", &i)?;
            let n = get("AWS_BATCH_JOB_ARRAY_SIZE")
                .map(|v| number("AWS_BATCH_JOB_ARRAY_SIZE", &v))
                .transpose()?;
            let src = match n {
                Some(n) => {
                    format!("{e} (AWS_BATCH_JOB_ARRAY_INDEX={i}, AWS_BATCH_JOB_ARRAY_SIZE={n})")
                }
                None => format!("{e} (AWS_BATCH_JOB_ARRAY_INDEX={i})"),
            };
            return with_count(i, n, src);
        }
        if let Some(r) = get("RANK") {
            let e = "RANK/WORLD_SIZE launcher";
            let r = number("RANK", &r)?;
            let n = number("WORLD_SIZE", &need("WORLD_SIZE", e)?)?;
            return with_count(r, Some(n), format!("{e} (RANK={r}, WORLD_SIZE={n})"));
        }
        Err(bad(
            "--shard auto found no job engine: none of SLURM_ARRAY_TASK_ID, \
             JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX or RANK is set",
        ))
    }

    /// This shard's batches out of `batches`: contiguous, as even as they divide.
    pub fn batches(&self, batches: usize) -> Range<usize> {
        // In u128: index × batches can pass usize for absurd but accepted inputs.
        let at = |i: usize| (i as u128 * batches as u128 / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn auto(vars: &[(&str, &str)], shards: Option<usize>) -> Result<(usize, usize), String> {
        Shard::parse("auto", shards, &env(vars))
            .map(|s| (s.index, s.count))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_split_covers_each_batch_once() {
        for batches in 0..20 {
            for count in 1..8 {
                let mut next = 0;
                for index in 0..count {
                    let r = Shard::checked(index, count, String::new())
                        .unwrap()
                        .batches(batches);
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, batches);
            }
        }
    }

    #[test]
    fn by_hand() {
        let none = env(&[]);
        let s = Shard::parse("2/5", None, &none).unwrap();
        assert_eq!((s.index, s.count), (2, 5));
        for bad in ["5/5", "1", "a/2", "0/0", "-1/2"] {
            assert!(Shard::parse(bad, None, &none).is_err(), "{bad}");
        }
        assert!(Shard::parse("1/4", Some(3), &none).is_err());
    }

    #[test]
    fn engines() {
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "12"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(auto(&slurm, None), Ok((2, 4)));
        let mut gaps = slurm.to_vec();
        gaps.push(("SLURM_ARRAY_TASK_MAX", "16"));
        assert!(auto(&gaps, None).unwrap_err().contains("contiguous"));
        let mut whole = slurm.to_vec();
        whole.push(("SLURM_ARRAY_TASK_MAX", "13"));
        assert_eq!(auto(&whole, None), Ok((2, 4)));
        let huge = Shard::checked(usize::MAX - 1, usize::MAX, String::new()).unwrap();
        assert!(huge.batches(3).end <= 3);
        let mut stepped = slurm.to_vec();
        stepped.push(("SLURM_ARRAY_TASK_STEP", "2"));
        assert!(auto(&stepped, None).unwrap_err().contains("STEP=2"));
        assert!(auto(&slurm, Some(5))
            .unwrap_err()
            .contains("--shards says 5"));
        let k8s = [("JOB_COMPLETION_INDEX", "3")];
        assert_eq!(auto(&k8s, Some(4)), Ok((3, 4)));
        assert!(auto(&k8s, None).unwrap_err().contains("--shards N"));
        assert!(auto(&k8s, Some(3)).unwrap_err().contains("out of range"));
        let aws = [
            ("AWS_BATCH_JOB_ARRAY_INDEX", "0"),
            ("AWS_BATCH_JOB_ARRAY_SIZE", "2"),
        ];
        assert_eq!(auto(&aws, None), Ok((0, 2)));
        assert_eq!(
            auto(&[("RANK", "1"), ("WORLD_SIZE", "3")], None),
            Ok((1, 3))
        );
        assert!(auto(&[("RANK", "1")], None)
            .unwrap_err()
            .contains("WORLD_SIZE"));
        assert!(auto(&[], None).unwrap_err().contains("no job engine"));
        assert!(auto(&[("RANK", "x"), ("WORLD_SIZE", "2")], None)
            .unwrap_err()
            .contains("RANK=\"x\""));
    }
}
