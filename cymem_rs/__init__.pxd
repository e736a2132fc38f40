# `from cymem_rs cimport Pool, ...`: the same declarations as cymem_rs.cymem.
from cymem_rs.cymem cimport *
