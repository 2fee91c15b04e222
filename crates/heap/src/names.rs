//! Class names in Java source form, as MAT and VisualVM show them.

/// `java/lang/String` → `java.lang.String`; `[Ljava/lang/Object;` →
/// `java.lang.Object[]`; `[[I` → `int[][]`.
pub fn source_name(internal: &str) -> String {
    let dims = internal.bytes().take_while(|&b| b == b'[').count();
    if dims == 0 {
        return internal.replace('/', ".");
    }
    let rest = &internal[dims..];
    let base = match rest {
        "Z" => "boolean".to_string(),
        "C" => "char".to_string(),
        "F" => "float".to_string(),
        "D" => "double".to_string(),
        "B" => "byte".to_string(),
        "S" => "short".to_string(),
        "I" => "int".to_string(),
        "J" => "long".to_string(),
        _ => rest.trim_start_matches('L').trim_end_matches(';').replace('/', "."),
    };
    format!("{base}{}", "[]".repeat(dims))
}

/// The simple name used in path descriptions: `java.util.ArrayList` → `ArrayList`.
pub fn short_name(source: &str) -> &str {
    source.rsplit('.').next().unwrap_or(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_internal_names() {
        assert_eq!(source_name("java/lang/String"), "java.lang.String");
        assert_eq!(source_name("[Ljava/lang/Object;"), "java.lang.Object[]");
        assert_eq!(source_name("[[I"), "int[][]");
        assert_eq!(source_name("[J"), "long[]");
        assert_eq!(source_name("com/example/Main$Session"), "com.example.Main$Session");
        assert_eq!(short_name("java.util.ArrayList"), "ArrayList");
    }
}
