//! The offline input: CSV with a header and the columns `timestamp` (Unix
//! seconds), `working_set_bytes` and, optionally, `limit_bytes` (empty on rows
//! without a limit) and what is known of the process's restarts: `started_at`
//! (Unix seconds at which the process running at that row started; a new value
//! is a restart) or `restart` (`1`/`true` on the first row after a restart).
//! With either column the detector splits lives there only, and takes every
//! other drop for memory the process freed.

use crate::Sample;

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("line {line}: {message}")]
    Row { line: u64, message: String },
    #[error("the header must name the columns `timestamp` and `working_set_bytes` (and optionally `limit_bytes`, `started_at` or `restart`); found: {0}")]
    Header(String),
    #[error("{0}")]
    Read(String),
}

/// A parsed trace: samples, the most recent limit (if any row had one), and
/// the (re)start times when the file says them (`None`: not known).
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub samples: Vec<Sample>,
    pub limit: Option<f64>,
    pub starts: Option<Vec<f64>>,
}

impl Trace {
    pub fn starts(&self) -> crate::Starts<'_> {
        match &self.starts {
            Some(times) => crate::Starts::Known(times),
            None => crate::Starts::Unknown,
        }
    }
}

pub fn parse(text: &str) -> Result<Trace, CsvError> {
    let mut reader = ::csv::ReaderBuilder::new().trim(::csv::Trim::All).flexible(true).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| CsvError::Read(e.to_string()))?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(t_col), Some(ws_col)) = (column("timestamp"), column("working_set_bytes")) else {
        return Err(CsvError::Header(headers.iter().collect::<Vec<_>>().join(",")));
    };
    let limit_col = column("limit_bytes");
    let (started_col, restart_col) = (column("started_at"), column("restart"));
    let mut trace = Trace { starts: (started_col.is_some() || restart_col.is_some()).then(Vec::new), ..Trace::default() };
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
        if let (Some(col), Some(starts)) = (started_col, trace.starts.as_mut()) {
            if let Some(started) = number(col, "started_at")? {
                if starts.last() != Some(&started) {
                    starts.push(started);
                }
            }
        }
        if let (Some(col), Some(starts)) = (restart_col, trace.starts.as_mut()) {
            match record.get(col).unwrap_or("").to_ascii_lowercase().as_str() {
                "" | "0" | "false" | "no" => {}
                "1" | "true" | "yes" => starts.push(t),
                other => return Err(CsvError::Row { line, message: format!("restart must be 1/true or 0/false/empty: '{other}'") }),
            }
        }
        trace.samples.push(Sample { t, bytes });
    }
    if let Some(starts) = trace.starts.as_mut() {
        starts.sort_by(f64::total_cmp);
        starts.dedup();
    }
    Ok(trace)
}

/// CSV text for a trace (the corpus files and recordings); with `starts`, a
/// `started_at` column.
pub fn write(samples: &[Sample], limit: Option<f64>, starts: Option<&[f64]>) -> String {
    let mut out = String::from(if starts.is_some() { "timestamp,working_set_bytes,limit_bytes,started_at\n" } else { "timestamp,working_set_bytes,limit_bytes\n" });
    for s in samples {
        let limit = limit.map(|l| format!("{l:.0}")).unwrap_or_default();
        out.push_str(&format!("{:.0},{:.0},{limit}", s.t, s.bytes));
        if let Some(starts) = starts {
            let started = starts.iter().rev().find(|r| **r <= s.t).map(|r| format!("{r:.0}")).unwrap_or_default();
            out.push_str(&format!(",{started}"));
        }
        out.push('\n');
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
        assert_eq!(t.starts, None);
    }

    #[test]
    fn restarts_come_from_started_at_or_restart_columns() {
        let t = parse("timestamp,working_set_bytes,started_at\n10,1,5\n20,1,5\n30,1,25\n40,1,\n").unwrap();
        assert_eq!(t.starts, Some(vec![5.0, 25.0]));
        let t = parse("timestamp,working_set_bytes,restart\n10,1,\n20,1,1\n30,1,0\n40,1,true\n").unwrap();
        assert_eq!(t.starts, Some(vec![20.0, 40.0]));
        let t = parse("timestamp,working_set_bytes,restart\n10,1,\n").unwrap();
        assert_eq!(t.starts, Some(vec![]), "the column says: no restart in this trace");
        assert!(parse("timestamp,working_set_bytes,restart\n10,1,maybe\n").unwrap_err().to_string().contains("line 2"));
        let back = parse(&write(&t.samples, None, Some(&[3.0]))).unwrap();
        assert_eq!(back.starts, Some(vec![3.0]));
    }
}
