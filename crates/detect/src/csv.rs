//! The offline input: CSV with a header and the columns `timestamp` (Unix
//! seconds), `working_set_bytes` and, optionally, `limit_bytes` (empty on rows
//! without a limit).

use crate::Sample;

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("line {line}: {message}")]
    Row { line: u64, message: String },
    #[error("the header must name the columns `timestamp` and `working_set_bytes` (and optionally `limit_bytes`); found: {0}")]
    Header(String),
    #[error("{0}")]
    Read(String),
}

/// A parsed trace: samples and the most recent limit (if any row had one).
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub samples: Vec<Sample>,
    pub limit: Option<f64>,
}

pub fn parse(text: &str) -> Result<Trace, CsvError> {
    let mut reader = ::csv::ReaderBuilder::new().trim(::csv::Trim::All).flexible(true).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| CsvError::Read(e.to_string()))?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(t_col), Some(ws_col)) = (column("timestamp"), column("working_set_bytes")) else {
        return Err(CsvError::Header(headers.iter().collect::<Vec<_>>().join(",")));
    };
    let limit_col = column("limit_bytes");
    let mut trace = Trace::default();
    for record in reader.records() {
        let record = record.map_err(|e| CsvError::Read(e.to_string()))?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let number = |col: usize, what: &str| -> Result<Option<f64>, CsvError> {
            let field = record.get(col).unwrap_or("");
            if field.is_empty() {
                return Ok(None);
            }
            let value: f64 = field
                .parse()
                .map_err(|_| CsvError::Row { line, message: format!("{what} is not a number: '{field}'") })?;
            if !value.is_finite() || value < 0.0 {
                return Err(CsvError::Row { line, message: format!("{what} must be a finite number ≥ 0: '{field}'") });
            }
            Ok(Some(value))
        };
        let t = number(t_col, "timestamp")?.ok_or(CsvError::Row { line, message: "timestamp is empty".into() })?;
        let bytes = number(ws_col, "working_set_bytes")?
            .ok_or(CsvError::Row { line, message: "working_set_bytes is empty".into() })?;
        if let Some(col) = limit_col {
            if let Some(limit) = number(col, "limit_bytes")? {
                trace.limit = Some(limit);
            }
        }
        trace.samples.push(Sample { t, bytes });
    }
    Ok(trace)
}

/// CSV text for a trace (the corpus files and recordings).
pub fn write(samples: &[Sample], limit: Option<f64>) -> String {
    let mut out = String::from("timestamp,working_set_bytes,limit_bytes\n");
    for s in samples {
        let limit = limit.map(|l| format!("{l:.0}")).unwrap_or_default();
        out.push_str(&format!("{:.0},{:.0},{limit}\n", s.t, s.bytes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_optional_and_empty_limits_and_reports_bad_rows() {
        let t = parse("timestamp,working_set_bytes\n1,100\n2,200\n").unwrap();
        assert_eq!((t.samples.len(), t.limit), (2, None));
        let t = parse("timestamp,working_set_bytes,limit_bytes\n1,100,\n2,200,1000\n3,300,\n").unwrap();
        assert_eq!(t.limit, Some(1000.0));
        let e = parse("timestamp,working_set_bytes\n1,100\n2,abc\n").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("abc"), "{e}");
        assert!(parse("time,ws\n1,2\n").unwrap_err().to_string().contains("header"));
        assert!(parse("timestamp,working_set_bytes\n1,-5\n").is_err());
    }
}
