//! Builder setters for option structs, written once: a setter per field, named after it.

/// `setters! { impl[generics] Type { /// docs \n field(param: Type) [= value]; ... } }` writes
/// `pub fn field(mut self, param: Type) -> Self { self.field = value; self }` for each field,
/// where `value` is `param` unless given (`= Some(param)`, `= param.max(1)`).
macro_rules! setters {
    (impl[$($generics:tt)*] $ty:ty {
        $( $(#[$attr:meta])* $field:ident($param:ident: $param_ty:ty) $(= $value:expr)?; )*
    }) => {
        impl<$($generics)*> $ty {
            $(
                $(#[$attr])*
                pub fn $field(mut self, $param: $param_ty) -> Self {
                    self.$field = $crate::setters::setters!(@value $param $(, $value)?);
                    self
                }
            )*
        }
    };
    (@value $param:ident) => {
        $param
    };
    (@value $param:ident, $value:expr) => {
        $value
    };
}
pub(crate) use setters;
