"""kernelgate's wrapper kernel: one ipykernel-based kernel for languages without a Jupyter
kernel of their own (C, C++, Go, Rust, Ruby, PHP, Perl, SQLite).

Modules: ``kernel`` (the ipykernel Kernel), ``languages`` (what each language runs),
``sessions`` (interpreter and compile-and-run styles), ``sources`` (splitting compiled-language
cells into declarations and statements), ``process`` (child processes: streaming, stdin,
interrupts), ``drivers/`` (the interpreter-side scripts).
"""

__version__ = "0.1.0"
