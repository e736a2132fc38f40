# `from cymem_rs cimport Pool, ...` when the repository root is on Cython's
# include path. The declarations live in cymem_rs/cymem.pxd.
from cymem_rs.cymem cimport *
