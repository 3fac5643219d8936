//! The subset of OData `$filter` that directory objects support: `eq`/`ne`/`ge`/`le` comparisons,
//! `startswith`/`endswith`, `in`, `any` lambdas on collections, `not`, `and`, `or`, parentheses.
//! Parsing also reports whether the expression needs Graph's advanced query mode.

use serde_json::{Map, Value};

/// A literal on the right of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Text(String),
    Bool(bool),
    Number(f64),
    Null,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Comparison {
    Eq,
    Ne,
    Ge,
    Le,
}

/// A parsed filter expression.
#[derive(Clone, Debug)]
pub(crate) enum Filter {
    Compare(String, Comparison, Literal),
    StartsWith(String, String),
    EndsWith(String, String),
    In(String, Vec<Literal>),
    /// `collection/any(x: x eq 'v')` or `collection/any(x: x/prop eq 'v')`.
    Any {
        collection: String,
        member: Option<String>,
        comparison: Comparison,
        value: Literal,
    },
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

/// Why a filter was refused.
#[derive(Debug, PartialEq)]
pub(crate) enum FilterProblem {
    /// It does not parse.
    Syntax(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Open,
    Close,
    Comma,
    Colon,
}

fn tokenize(input: &str) -> Result<Vec<Token>, FilterProblem> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            ':' => {
                tokens.push(Token::Colon);
                i += 1;
            }
            '\'' => {
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(FilterProblem::Syntax(format!(
                                "Unterminated string literal at position {i} in '{input}'."
                            )));
                        }
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            text.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(other) => {
                            text.push(*other);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Text(text));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '-' || chars[i] == '.')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                match word.parse::<f64>() {
                    Ok(n) => tokens.push(Token::Number(n)),
                    // an unquoted GUID, as in `id eq 8b0c...`
                    Err(_) => tokens.push(Token::Word(word)),
                }
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '/' | '.' | '$'))
                {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            other => {
                return Err(FilterProblem::Syntax(format!(
                    "Syntax error: character '{other}' is not valid at position {i} in '{input}'."
                )));
            }
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    input: &'a str,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> FilterProblem {
        FilterProblem::Syntax(format!(
            "Syntax error: {what} at position {} in '{}'.",
            self.at, self.input
        ))
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn expect(&mut self, token: &Token) -> Result<(), FilterProblem> {
        if self.tokens.get(self.at) == Some(token) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected {token:?}")))
        }
    }

    fn or(&mut self) -> Result<Filter, FilterProblem> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterProblem> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.at += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, FilterProblem> {
        if self.peek_word("not") {
            self.at += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn literal(&mut self) -> Result<Literal, FilterProblem> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        match token {
            Some(Token::Text(t)) => Ok(Literal::Text(t)),
            Some(Token::Number(n)) => Ok(Literal::Number(n)),
            Some(Token::Word(w)) if w == "true" => Ok(Literal::Bool(true)),
            Some(Token::Word(w)) if w == "false" => Ok(Literal::Bool(false)),
            Some(Token::Word(w)) if w == "null" => Ok(Literal::Null),
            Some(Token::Word(w)) if uuid::Uuid::parse_str(&w).is_ok() => Ok(Literal::Text(w)),
            _ => {
                self.at -= 1;
                Err(self.error("expected a literal"))
            }
        }
    }

    fn comparison(&mut self) -> Result<Comparison, FilterProblem> {
        let op = match self.tokens.get(self.at) {
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "eq" => Comparison::Eq,
                "ne" => Comparison::Ne,
                "ge" => Comparison::Ge,
                "le" => Comparison::Le,
                _ => return Err(self.error("expected an operator")),
            },
            _ => return Err(self.error("expected an operator")),
        };
        self.at += 1;
        Ok(op)
    }

    fn primary(&mut self) -> Result<Filter, FilterProblem> {
        match self.tokens.get(self.at).cloned() {
            Some(Token::Open) => {
                self.at += 1;
                let inner = self.or()?;
                self.expect(&Token::Close)?;
                Ok(inner)
            }
            Some(Token::Word(word)) => {
                self.at += 1;
                let lower = word.to_ascii_lowercase();
                if (lower == "startswith" || lower == "endswith")
                    && self.tokens.get(self.at) == Some(&Token::Open)
                {
                    self.at += 1;
                    let property = match self.tokens.get(self.at).cloned() {
                        Some(Token::Word(p)) => p,
                        _ => return Err(self.error("expected a property")),
                    };
                    self.at += 1;
                    self.expect(&Token::Comma)?;
                    let Literal::Text(prefix) = self.literal()? else {
                        return Err(self.error("expected a string"));
                    };
                    self.expect(&Token::Close)?;
                    return Ok(if lower == "startswith" {
                        Filter::StartsWith(property, prefix)
                    } else {
                        Filter::EndsWith(property, prefix)
                    });
                }
                if let Some(collection) = word.strip_suffix("/any") {
                    self.expect(&Token::Open)?;
                    let variable = match self.tokens.get(self.at).cloned() {
                        Some(Token::Word(v)) => v,
                        _ => return Err(self.error("expected a lambda variable")),
                    };
                    self.at += 1;
                    self.expect(&Token::Colon)?;
                    let target = match self.tokens.get(self.at).cloned() {
                        Some(Token::Word(v)) => v,
                        _ => return Err(self.error("expected the lambda variable")),
                    };
                    self.at += 1;
                    let member = if target == variable {
                        None
                    } else if let Some(rest) = target.strip_prefix(&format!("{variable}/")) {
                        Some(rest.to_owned())
                    } else {
                        return Err(self.error("unknown lambda variable"));
                    };
                    let comparison = self.comparison()?;
                    let value = self.literal()?;
                    self.expect(&Token::Close)?;
                    return Ok(Filter::Any {
                        collection: collection.to_owned(),
                        member,
                        comparison,
                        value,
                    });
                }
                if self.peek_word("in") {
                    self.at += 1;
                    self.expect(&Token::Open)?;
                    let mut values = vec![self.literal()?];
                    while self.tokens.get(self.at) == Some(&Token::Comma) {
                        self.at += 1;
                        values.push(self.literal()?);
                    }
                    self.expect(&Token::Close)?;
                    return Ok(Filter::In(word, values));
                }
                let comparison = self.comparison()?;
                let value = self.literal()?;
                Ok(Filter::Compare(word, comparison, value))
            }
            _ => Err(self.error("expected an expression")),
        }
    }
}

impl Filter {
    /// Parses a `$filter` value.
    pub(crate) fn parse(input: &str) -> Result<Filter, FilterProblem> {
        let tokens = tokenize(input)?;
        let mut parser = Parser {
            tokens,
            at: 0,
            input,
        };
        let filter = parser.or()?;
        if parser.at != parser.tokens.len() {
            return Err(parser.error("unexpected text"));
        }
        Ok(filter)
    }

    /// The first operator that needs `ConsistencyLevel: eventual`, named as Graph names it.
    pub(crate) fn advanced_operator(&self) -> Option<&'static str> {
        match self {
            Filter::Compare(_, Comparison::Ne, _) => Some("ne"),
            Filter::EndsWith(..) => Some("endsWith"),
            Filter::Not(_) => Some("not"),
            Filter::Any {
                comparison: Comparison::Ne,
                ..
            } => Some("ne"),
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.advanced_operator().or_else(|| b.advanced_operator())
            }
            _ => None,
        }
    }

    /// Every property the expression names (to check they are filterable).
    pub(crate) fn properties(&self) -> Vec<&str> {
        match self {
            Filter::Compare(p, ..)
            | Filter::StartsWith(p, _)
            | Filter::EndsWith(p, _)
            | Filter::In(p, _) => vec![p.as_str()],
            Filter::Any { collection, .. } => vec![collection.as_str()],
            Filter::Not(inner) => inner.properties(),
            Filter::And(a, b) | Filter::Or(a, b) => {
                let mut all = a.properties();
                all.extend(b.properties());
                all
            }
        }
    }

    /// Whether an object's properties satisfy the expression. Strings compare case-insensitively,
    /// as the directory does.
    pub(crate) fn matches(&self, object: &Map<String, Value>) -> bool {
        match self {
            Filter::Compare(p, op, literal) => compare(object.get(p.as_str()), *op, literal),
            Filter::StartsWith(p, prefix) => object
                .get(p.as_str())
                .and_then(Value::as_str)
                .is_some_and(|v| v.to_lowercase().starts_with(&prefix.to_lowercase())),
            Filter::EndsWith(p, suffix) => object
                .get(p.as_str())
                .and_then(Value::as_str)
                .is_some_and(|v| v.to_lowercase().ends_with(&suffix.to_lowercase())),
            Filter::In(p, values) => values
                .iter()
                .any(|v| compare(object.get(p.as_str()), Comparison::Eq, v)),
            Filter::Any {
                collection,
                member,
                comparison,
                value,
            } => object
                .get(collection.as_str())
                .and_then(Value::as_array)
                .is_some_and(|items| {
                    items.iter().any(|item| {
                        let target = match member {
                            Some(m) => item.get(m.as_str()),
                            None => Some(item),
                        };
                        compare(target, *comparison, value)
                    })
                }),
            Filter::Not(inner) => !inner.matches(object),
            Filter::And(a, b) => a.matches(object) && b.matches(object),
            Filter::Or(a, b) => a.matches(object) || b.matches(object),
        }
    }
}

fn compare(actual: Option<&Value>, op: Comparison, literal: &Literal) -> bool {
    let ordering = match (actual.unwrap_or(&Value::Null), literal) {
        (Value::Null, Literal::Null) => Some(std::cmp::Ordering::Equal),
        (Value::Null, _) | (_, Literal::Null) => None,
        (Value::String(a), Literal::Text(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
        (Value::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), Literal::Number(b)) => a.as_f64().and_then(|a| a.partial_cmp(b)),
        _ => None,
    };
    match (op, ordering) {
        (Comparison::Eq, Some(o)) => o.is_eq(),
        (Comparison::Ne, Some(o)) => o.is_ne(),
        (Comparison::Ne, None) => true,
        (Comparison::Ge, Some(o)) => o.is_ge(),
        (Comparison::Le, Some(o)) => o.is_le(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Map<String, Value> {
        json!({"userPrincipalName":"O'Brien@Contoso.com","displayName":"Aoife O'Brien",
               "accountEnabled":true,"proxyAddresses":["SMTP:o'brien@contoso.com"],
               "assignedLicenses":[{"skuId":"6fd2c87f-b296-42f0-b197-1e91e994b900"}]})
        .as_object()
        .cloned()
        .unwrap_or_default()
    }

    #[test]
    fn a_doubled_quote_is_an_escaped_quote_and_eq_ignores_case() {
        let filter = Filter::parse("userPrincipalName eq 'o''brien@contoso.com'").unwrap();
        assert!(filter.matches(&user()));
    }

    #[test]
    fn startswith_in_and_boolean_combinations_work() {
        let filter = Filter::parse(
            "startswith(displayName,'aoife') and (accountEnabled eq true or displayName in ('x','y'))",
        )
        .unwrap();
        assert!(filter.matches(&user()));
        assert!(filter.advanced_operator().is_none());
    }

    #[test]
    fn lambdas_match_collections() {
        let filter = Filter::parse(
            "assignedLicenses/any(x:x/skuId eq 6fd2c87f-b296-42f0-b197-1e91e994b900)",
        )
        .unwrap();
        assert!(filter.matches(&user()));
        let filter =
            Filter::parse("proxyAddresses/any(p:p eq 'smtp:o''brien@contoso.com')").unwrap();
        assert!(filter.matches(&user()));
    }

    #[test]
    fn ne_not_and_endswith_are_advanced() {
        assert_eq!(
            Filter::parse("displayName ne 'x'")
                .unwrap()
                .advanced_operator(),
            Some("ne")
        );
        assert_eq!(
            Filter::parse("endswith(mail,'@contoso.com')")
                .unwrap()
                .advanced_operator(),
            Some("endsWith")
        );
        assert_eq!(
            Filter::parse("not(accountEnabled eq true)")
                .unwrap()
                .advanced_operator(),
            Some("not")
        );
    }

    #[test]
    fn broken_filters_are_syntax_errors() {
        assert!(Filter::parse("userPrincipalName eq").is_err());
        assert!(Filter::parse("displayName eq 'open").is_err());
        assert!(Filter::parse("a eq 'b' c").is_err());
    }
}
