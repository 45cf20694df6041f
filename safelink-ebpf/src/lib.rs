#![no_std]
// Library target exists as in aya-template; the program lives in main.rs.
