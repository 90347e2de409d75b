using System;
using System.ComponentModel;
using System.IO;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// The key/value cache of one sequence: per layer, keys and values as F32 in the layout the attention kernels read,
/// [KvHeadCount, MaxContext, HeadDim] (one head's positions contiguous), preallocated for MaxContext positions.
/// The session owns it; the generated forward pass appends to it and reads it.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class KvCache
{
    private readonly float[][] _keys;   // [LayerCount][KvHeadCount, MaxContext, HeadDim]
    private readonly float[][] _values; // [LayerCount][KvHeadCount, MaxContext, HeadDim]

    /// <summary>Allocates the cache of <paramref name="maxContext"/> positions for the given shape.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is not positive, or the cache would not fit in .NET arrays.</exception>
    public KvCache(int layerCount, int kvHeadCount, int headDim, int maxContext)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(layerCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvHeadCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(headDim, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxContext, 1);
        long layerFloats = (long)kvHeadCount * maxContext * headDim;
        if (layerFloats > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(maxContext), maxContext, $"one layer's cache of {layerFloats} floats exceeds an array's limit");
        LayerCount = layerCount;
        KvHeadCount = kvHeadCount;
        HeadDim = headDim;
        MaxContext = maxContext;
        _keys = new float[layerCount][];
        _values = new float[layerCount][];
        for (int layer = 0; layer < layerCount; layer++)
        {
            _keys[layer] = new float[layerFloats];
            _values[layer] = new float[layerFloats];
        }
    }

    /// <summary>Decoder layers.</summary>
    public int LayerCount { get; }

    /// <summary>Key/value heads per layer.</summary>
    public int KvHeadCount { get; }

    /// <summary>Width of one head.</summary>
    public int HeadDim { get; }

    /// <summary>Positions the cache holds.</summary>
    public int MaxContext { get; }

    /// <summary>Layer <paramref name="layer"/>'s keys, [KvHeadCount, MaxContext, HeadDim].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float[] Keys(int layer) => _keys[layer];

    /// <summary>Layer <paramref name="layer"/>'s values, [KvHeadCount, MaxContext, HeadDim].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float[] Values(int layer) => _values[layer];

    /// <summary>
    /// Writes one token's keys and values, [KvHeadCount·HeadDim] each with the heads side by side (as the k/v
    /// projections produce them), at <paramref name="position"/> of layer <paramref name="layer"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // per token and layer: optimized from the first call, as the kernels
    public void Append(int layer, int position, ReadOnlySpan<float> keys, ReadOnlySpan<float> values)
    {
        if ((uint)position >= (uint)MaxContext)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"must be in [0, {MaxContext})");
        float[] layerKeys = _keys[layer], layerValues = _values[layer];
        for (int head = 0; head < KvHeadCount; head++)
        {
            int row = (head * MaxContext + position) * HeadDim;
            keys.Slice(head * HeadDim, HeadDim).CopyTo(layerKeys.AsSpan(row, HeadDim));
            values.Slice(head * HeadDim, HeadDim).CopyTo(layerValues.AsSpan(row, HeadDim));
        }
    }

    /// <summary>
    /// Drops positions [<paramref name="keep"/>, keep + <paramref name="discard"/>) of the first
    /// <paramref name="used"/> and moves the later ones down by <paramref name="discard"/>, in every layer and head.
    /// The moved keys still carry their old rotary positions: the caller re-rotates them (see <see cref="KeyRows"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Shift(int keep, int discard, int used)
    {
        if (keep < 0 || discard < 0 || used > MaxContext || keep + discard > used)
            throw new ArgumentOutOfRangeException(nameof(discard), $"cannot drop [{keep}, {keep + discard}) of {used} positions");
        int moved = used - keep - discard;
        for (int layer = 0; layer < LayerCount; layer++)
        {
            for (int head = 0; head < KvHeadCount; head++)
            {
                int from = (head * MaxContext + keep + discard) * HeadDim, to = (head * MaxContext + keep) * HeadDim;
                _keys[layer].AsSpan(from, moved * HeadDim).CopyTo(_keys[layer].AsSpan(to));
                _values[layer].AsSpan(from, moved * HeadDim).CopyTo(_values[layer].AsSpan(to));
            }
        }
    }

    /// <summary>Keys of positions [<paramref name="start"/>, start + <paramref name="count"/>) of one head: [count, HeadDim].</summary>
    public Span<float> KeyRows(int layer, int head, int start, int count) =>
        _keys[layer].AsSpan((head * MaxContext + start) * HeadDim, count * HeadDim);

    /// <summary>
    /// Writes the first <paramref name="positions"/> positions, layer by layer and head by head (keys then values),
    /// as little-endian F32; <see cref="Read"/> reads them back.
    /// </summary>
    public void Write(Stream stream, int positions)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfNegative(positions);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(positions, MaxContext);
        for (int layer = 0; layer < LayerCount; layer++)
        {
            for (int head = 0; head < KvHeadCount; head++)
            {
                stream.Write(MemoryMarshal.AsBytes(_keys[layer].AsSpan(head * MaxContext * HeadDim, positions * HeadDim)));
                stream.Write(MemoryMarshal.AsBytes(_values[layer].AsSpan(head * MaxContext * HeadDim, positions * HeadDim)));
            }
        }
    }

    /// <summary>Reads what <see cref="Write"/> wrote for <paramref name="positions"/> positions.</summary>
    /// <exception cref="InvalidDataException">The stream ends early.</exception>
    public void Read(Stream stream, int positions)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfNegative(positions);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(positions, MaxContext);
        for (int layer = 0; layer < LayerCount; layer++)
        {
            for (int head = 0; head < KvHeadCount; head++)
            {
                ReadExactly(stream, MemoryMarshal.AsBytes(_keys[layer].AsSpan(head * MaxContext * HeadDim, positions * HeadDim)));
                ReadExactly(stream, MemoryMarshal.AsBytes(_values[layer].AsSpan(head * MaxContext * HeadDim, positions * HeadDim)));
            }
        }
    }

    internal static void ReadExactly(Stream stream, Span<byte> buffer)
    {
        try
        {
            stream.ReadExactly(buffer);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException("The saved session state is truncated.", e);
        }
    }
}
