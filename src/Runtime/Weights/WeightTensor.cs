using System;
using System.ComponentModel;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// An F32 view of one tensor of a <see cref="ModelWeights"/>: a pointer into the memory-mapped file
/// (when the file stores F32) or into memory the weights own (after converting F16/BF16). The view is
/// valid only while the <see cref="ModelWeights"/> it came from is not disposed; it is read-only and
/// may be read by many threads at once.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public readonly unsafe struct WeightTensor
{
    private readonly float* _data;
    private readonly string? _name;

    internal WeightTensor(string name, float* data, int length)
    {
        _name = name;
        _data = data;
        Length = length;
    }

    /// <summary>The tensor's name in the weight file.</summary>
    public string Name => _name ?? string.Empty; // default(WeightTensor) has no name

    /// <summary>Number of floats (rows × columns for a matrix).</summary>
    public int Length { get; }

    /// <summary>
    /// True when the first value starts a 64-byte cache line. Generated kernels read such weights with 512-bit loads
    /// where the CPU has them; <see cref="WeightLoading.Copy"/> places tensor data so, a mapped GGUF file often does not.
    /// </summary>
    public bool IsCacheLineAligned => ((nuint)_data & 63) == 0;

    /// <summary>The values, row-major ([out][in] for a projection matrix).</summary>
    public ReadOnlySpan<float> Span => new(_data, Length);
}
