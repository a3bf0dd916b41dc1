//! One module per subcommand.

pub mod bench;
pub mod clean;
pub mod demo;
pub mod eval;
pub mod import;
pub mod info;
pub mod init;
pub mod pnp;
pub mod reconstruct;
pub mod train;
pub mod upgrade;

/// Parses a noise level: a number in image units ("0.1") or a fraction of 8-bit levels ("25/255").
/// Its range is checked by the library, which says what is wrong in one line.
pub fn parse_sigma(text: &str) -> Result<f64, String> {
    let number = |s: &str| s.trim().parse::<f64>().map_err(|_| format!("'{s}' is not a number"));
    Ok(match text.split_once('/') {
        Some((a, b)) => number(a)? / number(b)?,
        None => number(text)?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn sigma_parses_numbers_and_fractions() {
        assert_eq!(super::parse_sigma("0.1"), Ok(0.1));
        assert!((super::parse_sigma("25/255").unwrap() - 25.0 / 255.0).abs() < 1e-15);
        assert_eq!(super::parse_sigma("-1"), Ok(-1.0)); // refused later, by the model
        assert!(super::parse_sigma("x").is_err());
        assert!(super::parse_sigma("1/y").is_err());
    }
}
