//! The inverse of the unconstrained rational-quadratic spline (Durkan et al.
//! 2019, "Neural Spline Flows"), as used by VITS' `ConvFlow` with linear tails.
//! Per element, so it runs on plain slices: the duration predictor applies it
//! to one value per phoneme.

const MIN_BIN_WIDTH: f32 = 1e-3;
const MIN_BIN_HEIGHT: f32 = 1e-3;
const MIN_DERIVATIVE: f32 = 1e-3;

/// Spline parameters for one element: `bins` widths, `bins` heights and
/// `bins - 1` inner derivatives, all unnormalised.
pub struct SplineParams<'a> {
    pub widths: &'a [f32],
    pub heights: &'a [f32],
    pub derivatives: &'a [f32],
}

/// Inverts the spline on `[-tail_bound, tail_bound]`; identity outside.
pub fn inverse_rq_spline(y: f32, p: &SplineParams<'_>, tail_bound: f32) -> f32 {
    if !(y >= -tail_bound && y <= tail_bound) {
        return y;
    }
    let bins = p.widths.len();
    debug_assert_eq!(p.heights.len(), bins);
    debug_assert_eq!(p.derivatives.len() + 1, bins);

    let cumwidths = knots(p.widths, MIN_BIN_WIDTH, tail_bound);
    let cumheights = knots(p.heights, MIN_BIN_HEIGHT, tail_bound);

    // Linear tails: the outermost derivatives are fixed so the slope is 1.
    let boundary = ((1.0f32 - MIN_DERIVATIVE).exp() - 1.0).ln();
    let derivative = |k: usize| -> f32 {
        let u = if k == 0 || k == bins { boundary } else { p.derivatives[k - 1] };
        MIN_DERIVATIVE + softplus(u)
    };

    // searchsorted over the height knots, with the reference's epsilon on the last knot.
    let mut bin = 0usize;
    for (k, &c) in cumheights.iter().enumerate() {
        let c = if k == bins { c + 1e-6 } else { c };
        if y >= c {
            bin = k;
        }
    }
    let bin = bin.min(bins - 1);

    let in_cumwidth = cumwidths[bin];
    let in_width = cumwidths[bin + 1] - cumwidths[bin];
    let in_cumheight = cumheights[bin];
    let in_height = cumheights[bin + 1] - cumheights[bin];
    let delta = in_height / in_width;
    let d0 = derivative(bin);
    let d1 = derivative(bin + 1);

    let dy = y - in_cumheight;
    let a = dy * (d0 + d1 - 2.0 * delta) + in_height * (delta - d0);
    let b = in_height * d0 - dy * (d0 + d1 - 2.0 * delta);
    let c = -delta * dy;
    let discriminant = (b * b - 4.0 * a * c).max(0.0);
    let root = (2.0 * c) / (-b - discriminant.sqrt());
    root * in_width + in_cumwidth
}

/// Knot positions `[-B, ..., B]` (bins + 1 values) from unnormalised sizes.
fn knots(unnormalised: &[f32], min_size: f32, bound: f32) -> Vec<f32> {
    let bins = unnormalised.len();
    let max = unnormalised.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = unnormalised.iter().map(|&u| (u - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    let mut out = Vec::with_capacity(bins + 1);
    out.push(-bound);
    let mut acc = 0.0f32;
    for e in &exps[..bins] {
        acc += min_size + (1.0 - min_size * bins as f32) * (e / sum);
        out.push(2.0 * bound * acc - bound);
    }
    out[bins] = bound;
    out
}

fn softplus(x: f32) -> f32 {
    // torch's softplus with threshold 20.
    if x > 20.0 { x } else { x.exp().ln_1p() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forward spline from the reference formulas, to check the inverse.
    fn forward(x: f32, p: &SplineParams<'_>, bound: f32) -> f32 {
        let bins = p.widths.len();
        let cw = knots(p.widths, MIN_BIN_WIDTH, bound);
        let ch = knots(p.heights, MIN_BIN_HEIGHT, bound);
        let boundary = ((1.0f32 - MIN_DERIVATIVE).exp() - 1.0).ln();
        let d = |k: usize| {
            let u = if k == 0 || k == bins { boundary } else { p.derivatives[k - 1] };
            MIN_DERIVATIVE + softplus(u)
        };
        let bin = (0..bins).rev().find(|&k| x >= cw[k]).unwrap_or(0);
        let w = cw[bin + 1] - cw[bin];
        let h = ch[bin + 1] - ch[bin];
        let delta = h / w;
        let theta = (x - cw[bin]) / w;
        let tt = theta * (1.0 - theta);
        let num = h * (delta * theta * theta + d(bin) * tt);
        let den = delta + (d(bin) + d(bin + 1) - 2.0 * delta) * tt;
        ch[bin] + num / den
    }

    #[test]
    fn inverse_undoes_forward() {
        let widths = [0.3, -0.2, 0.5, 0.1, 0.0, -0.4, 0.2, 0.9, -0.1, 0.05];
        let heights = [-0.3, 0.2, 0.1, 0.4, -0.5, 0.0, 0.3, -0.2, 0.6, 0.1];
        let derivatives = [0.1, -0.3, 0.5, 0.2, -0.1, 0.0, 0.4, -0.2, 0.3];
        let p = SplineParams { widths: &widths, heights: &heights, derivatives: &derivatives };
        for i in -49..=49 {
            let x = i as f32 * 0.1;
            let y = forward(x, &p, 5.0);
            let back = inverse_rq_spline(y, &p, 5.0);
            assert!((back - x).abs() < 1e-3, "x={x} y={y} back={back}");
        }
    }

    #[test]
    fn identity_outside_the_tails() {
        let z = [0.0f32; 10];
        let p = SplineParams { widths: &z, heights: &z, derivatives: &z[..9] };
        assert_eq!(inverse_rq_spline(7.5, &p, 5.0), 7.5);
        assert_eq!(inverse_rq_spline(-5.5, &p, 5.0), -5.5);
        assert!(inverse_rq_spline(f32::NAN, &p, 5.0).is_nan());
    }
}
