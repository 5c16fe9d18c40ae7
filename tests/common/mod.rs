pub mod images;
pub mod tree;
