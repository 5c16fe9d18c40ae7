//! docker-archive and OCI layout / OCI archive, in and out.
