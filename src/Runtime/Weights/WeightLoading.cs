namespace Llama.Compiled;

/// <summary>How a model's weight files are brought into memory.</summary>
public enum WeightLoading
{
    /// <summary>
    /// Memory-map the files: nothing is copied, and the operating system's page cache holds the weights once for every
    /// process that maps them. The default. Tensors the kernels cannot read as stored — Q8_0/Q4_0/Q4_K matrices, which are
    /// rearranged into the kernels' layout (<see cref="BlockQuantization.ToKernelLayout"/>), and tensors converted to
    /// another compute format — are converted by the first load into a cache file,
    /// <c>&lt;weights file&gt;.llama-compiled-cache</c> beside the weights (where that folder is not writable,
    /// <c>$XDG_CACHE_HOME/llama-compiled</c> or <c>~/.cache/llama-compiled</c>; the environment variable
    /// <c>LLAMA_COMPILED_CACHE_DIR</c> names another folder), and every later load maps that file too: no load holds a
    /// private copy of the weights. The cache is checked against the weights (length, modification time, sampled bytes),
    /// the compiled formats and shapes and the kernel layout's version, and rebuilt when it is stale, truncated or
    /// corrupt; a build writes a temporary file and renames it into place, so concurrent loads never read a partial
    /// cache. Where nothing is writable, the conversions are made in memory the weights own, as
    /// <see cref="MapWithoutCache"/> does.
    /// </summary>
    Map,

    /// <summary>
    /// Read the files into the process's own memory, aligned to 2 MB and, on Linux, backed by transparent huge
    /// pages (as llama.cpp does without mmap), with the tensor data starting on a cache line. Loading reads every
    /// byte (measured: 2–4 s more than mapping for TinyLlama-1.1B F32, 4.4 GB) and the process holds its own copy;
    /// in return, generation that streams the weights from memory runs faster, since a few thousand
    /// translation entries cover gigabytes (measured with LlamaBench on TinyLlama-1.1B, one thread:
    /// F32 decode +10 %, Q8_0 +10–15 %). Q8_0/Q4_0/Q4_K matrices are rearranged into the kernels' layout in place, in the copy.
    /// Writes no cache file.
    /// </summary>
    Copy,

    /// <summary>
    /// Memory-map the files as <see cref="Map"/> does, but write and read no cache file: tensors that must be converted
    /// (Q8_0/Q4_0/Q4_K matrices into the kernels' layout, other compute formats) are converted on every load into memory the
    /// weights own — for TinyLlama-1.1B Q8_0, 1.1 GB besides the mapped file.
    /// </summary>
    MapWithoutCache,
}
