//! Pega's priority P·V·C·L, multiplied in exactly the documented order.

/// `((propensity * value) * context_weight) * lever` as IEEE-754 doubles, left to right, so the
/// result matches Pega's `Priority` bit for bit. A non-finite product (overflow) is an error:
/// it could not be ranked meaningfully.
#[inline]
pub fn priority(
    propensity: f64,
    value: f64,
    context_weight: f64,
    lever: f64,
) -> Result<f64, String> {
    let product = ((propensity * value) * context_weight) * lever;
    if product.is_finite() {
        Ok(product)
    } else {
        Err(format!(
            "priority (({propensity} * {value}) * {context_weight}) * {lever} is not finite"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::priority;

    #[test]
    fn multiplies_left_to_right() {
        // (0.1 * 3.0) * 0.7 differs from 0.1 * (3.0 * 0.7) in the last bit.
        let left = ((0.1f64 * 3.0) * 0.7) * 1.0;
        assert_eq!(priority(0.1, 3.0, 0.7, 1.0), Ok(left));
        assert_ne!(left, 0.1 * (3.0 * 0.7));
    }

    #[test]
    fn overflow_is_an_error() {
        assert!(priority(1.0, f64::MAX, 2.0, 1.0).is_err());
        assert!(priority(1.0, f64::MAX, 2.0, 0.0).is_err());
    }
}
