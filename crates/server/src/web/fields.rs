//! Form errors next to their field. A page that refuses a form renders the form again with what
//! the user typed and, under each field that was wrong, its message (`id="{field}-error"`, linked
//! from the field with `aria-describedby` and marked `aria-invalid`), so nothing typed is lost
//! and the message is where the user looks.

use maud::{html, Markup};

/// The errors of one submitted form, by field name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(Vec<(String, String)>);

impl FieldErrors {
    /// One error for one field.
    pub fn one(field: &str, message: impl Into<String>) -> FieldErrors {
        FieldErrors(vec![(field.to_owned(), message.into())])
    }

    /// Adds an error for `field`.
    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push((field.to_owned(), message.into()));
    }

    /// True when no field is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The message of `field`, if it is wrong.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    /// Every message, in order (for a summary at the top of the form).
    pub fn messages(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(_, m)| m.as_str())
    }

    /// `"true"` for `aria-invalid` when `field` is wrong.
    pub fn invalid(&self, field: &str) -> Option<&'static str> {
        self.get(field).map(|_| "true")
    }

    /// The id of `field`'s message for `aria-describedby`, when it is wrong.
    pub fn described_by(&self, field: &str) -> Option<String> {
        self.get(field).map(|_| format!("{field}-error"))
    }

    /// The message line under `field`: nothing when it is right.
    pub fn note(&self, field: &str) -> Markup {
        html! {
            @if let Some(m) = self.get(field) {
                span.field-error id={ (field) "-error" } { (m) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_escaped_and_only_for_wrong_fields() {
        let e = FieldErrors::one("price", "<b> is not a number");
        assert_eq!(e.note("other").into_string(), "");
        assert_eq!(
            e.note("price").into_string(),
            "<span class=\"field-error\" id=\"price-error\">&lt;b&gt; is not a number</span>"
        );
        assert_eq!(e.invalid("price"), Some("true"));
        assert_eq!(e.described_by("price").as_deref(), Some("price-error"));
        assert!(e.invalid("other").is_none());
    }
}
