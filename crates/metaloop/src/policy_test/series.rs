//! The compact series notation of policy tests, after promtool's: space-separated terms,
//! each one cycle's value or an expansion.
//!
//! - `0.87` — one cycle with value 0.87;
//! - `a+bxn` — `n + 1` cycles: a, a+b, …, a+n·b (`a-bxn` counts down);
//! - `axn` — `n + 1` cycles of `a` (short for `a+0xn`);
//! - `_` — one cycle without data; `_xn` — `n + 1` such cycles.

/// One cycle's value, `None` when the cycle has no data.
pub type Point = Option<f64>;

/// Expands a series; the error names the term and what is wrong with it.
pub fn parse(text: &str) -> Result<Vec<Point>, String> {
    let mut out = Vec::new();
    for term in text.split_whitespace() {
        expand(term, &mut out).map_err(|e| format!("term {term:?}: {e}"))?;
    }
    if out.is_empty() {
        return Err("empty series".into());
    }
    Ok(out)
}

fn expand(term: &str, out: &mut Vec<Point>) -> Result<(), String> {
    let (head, times) = match term.rsplit_once('x') {
        Some((h, n)) => {
            let n: usize = n
                .parse()
                .map_err(|_| format!("{n:?} after 'x' is not a whole number of repeats"))?;
            if n > 100_000 {
                return Err(format!("{n} repeats is more than the 100000 allowed"));
            }
            (h, Some(n))
        }
        None => (term, None),
    };
    if head == "_" {
        out.extend(std::iter::repeat_n(None, times.unwrap_or(0) + 1));
        return Ok(());
    }
    let Some(n) = times else {
        out.push(Some(number(head)?));
        return Ok(());
    };
    // a+b or a-b: the step's sign is the last '+' or '-' not at the start or after an 'e'
    let split = head
        .char_indices()
        .filter(|&(i, c)| {
            (c == '+' || c == '-') && i > 0 && !matches!(head.as_bytes()[i - 1], b'e' | b'E')
        })
        .map(|(i, _)| i)
        .next_back();
    let (start, step) = match split {
        Some(i) => (number(&head[..i])?, number(&head[i..])?),
        None => (number(head)?, 0.0),
    };
    for k in 0..=n {
        out.push(Some(start + step * k as f64));
    }
    Ok(())
}

fn number(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_start_matches('+')
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !v.is_finite() {
        return Err(format!("{s:?} is not a finite number"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_promtool() {
        // promtool: '1+1x3' is 1 2 3 4, '5x2' is 5 5 5, '_x1' two missing values
        assert_eq!(
            parse("1+1x3").unwrap(),
            vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0)]
        );
        assert_eq!(parse("5x2").unwrap(), vec![Some(5.0); 3]);
        assert_eq!(parse("_x1 7").unwrap(), vec![None, None, Some(7.0)]);
        assert_eq!(
            parse("10-2x2 _").unwrap(),
            vec![Some(10.0), Some(8.0), Some(6.0), None]
        );
        assert_eq!(parse("-1+0.5x1").unwrap(), vec![Some(-1.0), Some(-0.5)]);
        assert_eq!(parse("1e-3x1").unwrap(), vec![Some(0.001); 2]);
        assert_eq!(parse("0.87").unwrap(), vec![Some(0.87)]);
    }

    #[test]
    fn errors_name_the_term() {
        assert!(parse("").unwrap_err().contains("empty"));
        let e = parse("0.9 abc").unwrap_err();
        assert!(e.contains("\"abc\"") && e.contains("not a number"), "{e}");
        let e = parse("1x-2").unwrap_err();
        assert!(e.contains("whole number"), "{e}");
        assert!(parse("1x1000001").unwrap_err().contains("repeats"));
        assert!(parse("inf").unwrap_err().contains("finite"));
    }
}
