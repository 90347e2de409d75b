namespace Llama.Compiled;

/// <summary>How a model's weight files are brought into memory.</summary>
public enum WeightLoading
{
    /// <summary>
    /// Memory-map the files: loading is immediate, nothing is copied, and the operating system's page cache
    /// holds the weights once for every process that maps them. The default. Exceptions: tensors converted to
    /// another compute format, and Q8_0/Q4_0/Q4_K matrices, which are rearranged into the kernels' layout
    /// (<see cref="BlockQuantization.ToKernelLayout"/>) in memory the weights own.
    /// </summary>
    Map,

    /// <summary>
    /// Read the files into the process's own memory, aligned to 2 MB and, on Linux, backed by transparent huge
    /// pages (as llama.cpp does without mmap), with the tensor data starting on a cache line. Loading reads every
    /// byte (measured: 2–4 s more than mapping for TinyLlama-1.1B F32, 4.4 GB) and the process holds its own copy;
    /// in return, generation that streams the weights from memory runs faster, since a few thousand
    /// translation entries cover gigabytes (measured with LlamaBench on TinyLlama-1.1B, one thread:
    /// F32 decode +10 %, Q8_0 +10–15 %). Q8_0/Q4_0/Q4_K matrices are rearranged into the kernels' layout in place, in the copy.
    /// </summary>
    Copy,
}
