//! Throwaway hosts for kernel tests.
