using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// Rotary position embedding: the cos/sin of every position's angles, [MaxContext, Pairs], and the rotation of
/// query/key heads by them, in the pairing the weights were stored with.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class RopeTable
{
    private readonly float[] _cos; // [MaxContext, Pairs]
    private readonly float[] _sin; // [MaxContext, Pairs]

    /// <summary>
    /// Tabulates angle = position × inverseFrequencies[j] (a float32 product, as llama2.c and transformers compute it)
    /// for positions [0, <paramref name="maxContext"/>).
    /// </summary>
    /// <param name="inverseFrequencies">theta^(-2j/HeadDim) per rotated pair j, already scaled as the config says.</param>
    /// <param name="maxContext">Positions to tabulate.</param>
    /// <param name="headDim">Width of one head; at least twice the pairs.</param>
    /// <param name="layout">Pairs (2j, 2j+1) as llama2.c and GGUF store q/k, or (j, j + Pairs) as Hugging Face does.</param>
    public RopeTable(ReadOnlySpan<float> inverseFrequencies, int maxContext, int headDim, RopeLayout layout)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxContext, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(headDim, 2 * inverseFrequencies.Length);
        Pairs = inverseFrequencies.Length;
        HeadDim = headDim;
        MaxContext = maxContext;
        Layout = layout;
        _cos = new float[maxContext * Pairs];
        _sin = new float[maxContext * Pairs];
        for (int pos = 0; pos < maxContext; pos++)
        {
            for (int j = 0; j < Pairs; j++)
            {
                float angle = pos * inverseFrequencies[j];
                _cos[pos * Pairs + j] = MathF.Cos(angle);
                _sin[pos * Pairs + j] = MathF.Sin(angle);
            }
        }
    }

    /// <summary>Rotated pairs per head.</summary>
    public int Pairs { get; }

    /// <summary>Width of one head.</summary>
    public int HeadDim { get; }

    /// <summary>Positions tabulated.</summary>
    public int MaxContext { get; }

    /// <summary>Which dimensions form a rotated pair.</summary>
    public RopeLayout Layout { get; }

    /// <summary>Rotates every head of <paramref name="heads"/> ([heads, HeadDim]) to <paramref name="position"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Rotate(Span<float> heads, int position) =>
        Rotate(heads, _cos.AsSpan(position * Pairs, Pairs), _sin.AsSpan(position * Pairs, Pairs), negate: false);

    /// <summary>
    /// Rotates every head of <paramref name="heads"/> ([heads, HeadDim]) back by <paramref name="distance"/> positions
    /// (rotations compose): keys moved down the cache by a context shift get the angles of their new positions.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void RotateBack(Span<float> heads, int distance) =>
        Rotate(heads, _cos.AsSpan(distance * Pairs, Pairs), _sin.AsSpan(distance * Pairs, Pairs), negate: true);

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private void Rotate(Span<float> v, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, bool negate)
    {
        int pairs = Pairs, headDim = HeadDim;
        // (j, j + Pairs) in Hugging Face's rotate-half layout, (2j, 2j + 1) in llama2.c's and GGUF's.
        int stride = Layout == RopeLayout.AdjacentPairs ? 2 : 1, partner = Layout == RopeLayout.AdjacentPairs ? 1 : pairs;
        for (int head = 0; head + headDim <= v.Length; head += headDim)
        {
            for (int j = 0; j < pairs; j++)
            {
                int a = head + stride * j, b = a + partner;
                float s = negate ? -sin[j] : sin[j];
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * cos[j] - x1 * s;
                v[b] = x0 * s + x1 * cos[j];
            }
        }
    }
}
