//! The run's log, `log.jsonl`: one JSON object per line, either
//! `{"kind":"train","step":..,"epoch":..,"loss":..,"lr":..,"steps_per_s":..,"pixels_per_s":..,"seconds":..}`
//! (the mean loss over the steps since the previous line) or
//! `{"kind":"eval","step":..,"split":"test","psnr":..,"ssim":..,"images":..}`.
//! Kept in memory as well, for the curves.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Train {
        step: u64,
        epoch: f64,
        loss: f64,
        /// Learning rate of the last step of the window.
        #[serde(default)]
        lr: f64,
        steps_per_s: f64,
        pixels_per_s: f64,
        seconds: f64,
    },
    Eval {
        step: u64,
        split: String,
        psnr: f64,
        ssim: f64,
        images: usize,
    },
}

impl Record {
    fn step(&self) -> u64 {
        match self {
            Record::Train { step, .. } | Record::Eval { step, .. } => *step,
        }
    }
}

pub struct MetricsLog {
    path: PathBuf,
    pub records: Vec<Record>,
}

impl MetricsLog {
    /// A new log (truncating any old one), or, when resuming at `resume_step`, the existing log
    /// with every record after that step dropped (they belong to the interrupted continuation).
    pub fn open(path: &Path, resume_step: Option<u64>) -> Result<MetricsLog> {
        let mut records = Vec::new();
        if let Some(step) = resume_step {
            if let Ok(text) = std::fs::read_to_string(path) {
                records = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Record>(l).ok())
                    .filter(|r| r.step() <= step)
                    .collect();
            }
        }
        let mut text = String::new();
        for r in &records {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(MetricsLog { path: path.to_path_buf(), records })
    }

    pub fn push(&mut self, record: Record) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(|| format!("cannot append to {}", self.path.display()))?;
        writeln!(f, "{}", serde_json::to_string(&record)?)?;
        self.records.push(record);
        Ok(())
    }

    /// (step, loss) of every training record.
    pub fn losses(&self) -> Vec<(u64, f64)> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Train { step, loss, .. } => Some((*step, *loss)),
                _ => None,
            })
            .collect()
    }

    /// (step, PSNR) of the evaluations of `split`.
    pub fn psnr(&self, split: &str) -> Vec<(u64, f64)> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Eval { step, split: s, psnr, .. } if s == split => Some((*step, *psnr)),
                _ => None,
            })
            .collect()
    }
}
