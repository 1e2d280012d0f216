//! Collecting errors instead of returning the first, so that one compile shows the user every
//! problem with their `#[state(...)]` instead of one per edit-compile round.

/// The errors found so far, combined into one [`syn::Error`] that renders as several messages.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}
