using System;
using System.ComponentModel;
using System.IO;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// The key/value cache of one sequence: per layer, keys and values in the layout the attention kernels read,
/// [KvHeadCount, MaxContext, HeadDim] (one head's positions contiguous), preallocated for MaxContext positions and stored
/// in the session's <see cref="KvCacheFormat"/>. The session owns it; the generated forward pass appends to it and reads
/// it a tile of positions at a time (<see cref="KeyTile"/>, <see cref="ValueTile"/>): F32 tiles in place, F16 and Q8_0
/// tiles widened to floats.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class KvCache
{
    // One pair of arrays per layer, in the format's element type; the others stay null.
    private readonly float[][]? _keysF32, _valuesF32;   // F32: [LayerCount][KvHeadCount, MaxContext, HeadDim]
    private readonly Half[][]? _keysF16, _valuesF16;    // F16: [LayerCount][KvHeadCount, MaxContext, HeadDim]
    private readonly sbyte[][]? _keyQuants, _valueQuants; // Q8_0: [LayerCount][KvHeadCount, MaxContext, HeadDim]
    private readonly float[][]? _keyScales, _valueScales; // Q8_0: [LayerCount][KvHeadCount, MaxContext, HeadDim / Q8BlockSize]

    /// <summary>Allocates an F32 cache of <paramref name="maxContext"/> positions for the given shape.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is not positive, or the cache would not fit in .NET arrays.</exception>
    public KvCache(int layerCount, int kvHeadCount, int headDim, int maxContext)
        : this(layerCount, kvHeadCount, headDim, maxContext, KvCacheFormat.F32)
    {
    }

    /// <summary>Allocates the cache of <paramref name="maxContext"/> positions for the given shape, stored as <paramref name="format"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is not positive, the cache would not fit in .NET arrays, or the format is unknown.</exception>
    public KvCache(int layerCount, int kvHeadCount, int headDim, int maxContext, KvCacheFormat format)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(layerCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvHeadCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(headDim, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxContext, 1);
        long layerElements = (long)kvHeadCount * maxContext * headDim;
        if (layerElements > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(maxContext), maxContext, $"one layer's cache of {layerElements} elements exceeds an array's limit");
        LayerCount = layerCount;
        KvHeadCount = kvHeadCount;
        HeadDim = headDim;
        MaxContext = maxContext;
        Format = format;
        // llama.cpp's q8_0 blocks are 32 wide; a head narrower than that, or not made of whole blocks, is one block.
        Q8BlockSize = headDim % 32 == 0 ? 32 : headDim;
        switch (format)
        {
            case KvCacheFormat.F32:
                (_keysF32, _valuesF32) = (Layers<float>(layerElements), Layers<float>(layerElements));
                break;
            case KvCacheFormat.F16:
                (_keysF16, _valuesF16) = (Layers<Half>(layerElements), Layers<Half>(layerElements));
                break;
            case KvCacheFormat.Q8_0:
                (_keyQuants, _valueQuants) = (Layers<sbyte>(layerElements), Layers<sbyte>(layerElements));
                long scales = layerElements / Q8BlockSize;
                (_keyScales, _valueScales) = (Layers<float>(scales), Layers<float>(scales));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(format), format, "unknown KV cache format");
        }
    }

    private T[][] Layers<T>(long elements)
    {
        var layers = new T[LayerCount][];
        for (int layer = 0; layer < LayerCount; layer++)
            layers[layer] = new T[elements];
        return layers;
    }

    /// <summary>Decoder layers.</summary>
    public int LayerCount { get; }

    /// <summary>Key/value heads per layer.</summary>
    public int KvHeadCount { get; }

    /// <summary>Width of one head.</summary>
    public int HeadDim { get; }

    /// <summary>Positions the cache holds.</summary>
    public int MaxContext { get; }

    /// <summary>How keys and values are stored.</summary>
    public KvCacheFormat Format { get; }

    /// <summary>Values per Q8_0 block (one scale each): 32 as llama.cpp's q8_0, or HeadDim when it is not a multiple of 32.</summary>
    public int Q8BlockSize { get; }

    /// <summary>Bytes the keys and values of all layers and positions take (the cache's memory, allocated up front).</summary>
    public long Bytes
    {
        get
        {
            long elements = 2L * LayerCount * KvHeadCount * MaxContext * HeadDim;
            return Format switch
            {
                KvCacheFormat.F32 => elements * sizeof(float),
                KvCacheFormat.F16 => elements * 2,
                _ => elements + elements / Q8BlockSize * sizeof(float),
            };
        }
    }

    /// <summary>
    /// Writes one token's keys and values, [KvHeadCount·HeadDim] each with the heads side by side (as the k/v
    /// projections produce them), at <paramref name="position"/> of layer <paramref name="layer"/>, converted to <see cref="Format"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // per token and layer: optimized from the first call, as the kernels
    public void Append(int layer, int position, ReadOnlySpan<float> keys, ReadOnlySpan<float> values)
    {
        if ((uint)position >= (uint)MaxContext)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"must be in [0, {MaxContext})");
        for (int head = 0; head < KvHeadCount; head++)
        {
            StoreRows(layer, head, position, keys.Slice(head * HeadDim, HeadDim), values: false);
            StoreRows(layer, head, position, values.Slice(head * HeadDim, HeadDim), values: true);
        }
    }

    /// <summary>
    /// Keys of positions [<paramref name="start"/>, start + <paramref name="count"/>) of one head as floats, [count, HeadDim]:
    /// the cache itself when it is F32, else widened into <paramref name="tile"/> (at least count·HeadDim). Valid until the cache changes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public ReadOnlySpan<float> KeyTile(int layer, int head, int start, int count, Span<float> tile) => LoadRows(layer, head, start, count, tile, values: false);

    /// <summary>Values of positions [<paramref name="start"/>, start + <paramref name="count"/>) of one head as floats, as <see cref="KeyTile"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public ReadOnlySpan<float> ValueTile(int layer, int head, int start, int count, Span<float> tile) => LoadRows(layer, head, start, count, tile, values: true);

    /// <summary>
    /// Replaces the keys of positions [<paramref name="start"/>, start + rows) of one head with <paramref name="keys"/>
    /// ([rows, HeadDim]), converted to <see cref="Format"/>: how a context shift writes back the keys it re-rotated.
    /// </summary>
    public void WriteKeys(int layer, int head, int start, ReadOnlySpan<float> keys)
    {
        int rows = keys.Length / HeadDim;
        if (keys.Length != rows * HeadDim || start < 0 || start + rows > MaxContext)
            throw new ArgumentOutOfRangeException(nameof(keys), $"{keys.Length} floats at position {start} are not whole rows inside the cache");
        for (int row = 0; row < rows; row++)
            StoreRows(layer, head, start + row, keys.Slice(row * HeadDim, HeadDim), values: false);
    }

    /// <summary>Keys of positions [<paramref name="start"/>, start + <paramref name="count"/>) of one head of an F32 cache, writable: [count, HeadDim].</summary>
    /// <exception cref="InvalidOperationException">The cache is not F32 (read with <see cref="KeyTile"/>, write with <see cref="WriteKeys"/>).</exception>
    public Span<float> KeyRows(int layer, int head, int start, int count) =>
        _keysF32 is { } keys ? keys[layer].AsSpan((head * MaxContext + start) * HeadDim, count * HeadDim)
            : throw new InvalidOperationException($"A {Format} cache has no float rows to write in place.");

    private void StoreRows(int layer, int head, int position, ReadOnlySpan<float> row, bool values)
    {
        int offset = (head * MaxContext + position) * HeadDim;
        switch (Format)
        {
            case KvCacheFormat.F32:
                row.CopyTo((values ? _valuesF32! : _keysF32!)[layer].AsSpan(offset, HeadDim));
                break;
            case KvCacheFormat.F16:
                Span<Half> halves = (values ? _valuesF16! : _keysF16!)[layer].AsSpan(offset, HeadDim);
                for (int i = 0; i < HeadDim; i++)
                    halves[i] = (Half)row[i]; // round to nearest even, as F16C's vcvtps2ph in ggml
                break;
            default:
                QuantizeQ8_0(row, (values ? _valueQuants! : _keyQuants!)[layer].AsSpan(offset, HeadDim),
                    (values ? _valueScales! : _keyScales!)[layer].AsSpan(offset / Q8BlockSize, HeadDim / Q8BlockSize));
                break;
        }
    }

    /// <summary>
    /// ggml's quantize_row_q8_0: per block d = max|x| / 127, quants round(x / d) (halves away from zero), and the scale
    /// kept as F16 rounds it (stored here as the float of that F16, so attention does not convert it per block).
    /// </summary>
    private void QuantizeQ8_0(ReadOnlySpan<float> row, Span<sbyte> quants, Span<float> scales)
    {
        for (int block = 0; block < scales.Length; block++)
        {
            ReadOnlySpan<float> x = row.Slice(block * Q8BlockSize, Q8BlockSize);
            float amax = 0f;
            foreach (float value in x)
                amax = Math.Max(amax, Math.Abs(value));
            float d = amax / 127f, id = d != 0f ? 1f / d : 0f;
            scales[block] = (float)(Half)d;
            for (int i = 0; i < x.Length; i++)
                quants[block * Q8BlockSize + i] = (sbyte)Math.Clamp(MathF.Round(x[i] * id, MidpointRounding.AwayFromZero), -128f, 127f);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private ReadOnlySpan<float> LoadRows(int layer, int head, int start, int count, Span<float> tile, bool values)
    {
        if (start < 0 || count < 0 || start + count > MaxContext)
            throw new ArgumentOutOfRangeException(nameof(count), $"positions [{start}, {start + count}) are outside [0, {MaxContext})");
        int offset = (head * MaxContext + start) * HeadDim, length = count * HeadDim;
        switch (Format)
        {
            case KvCacheFormat.F32:
                return (values ? _valuesF32! : _keysF32!)[layer].AsSpan(offset, length);
            case KvCacheFormat.F16:
                KernelMath.ConvertToSingle((values ? _valuesF16! : _keysF16!)[layer].AsSpan(offset, length), tile);
                return tile.Slice(0, length);
            default:
                DequantizeQ8_0((values ? _valueQuants! : _keyQuants!)[layer].AsSpan(offset, length),
                    (values ? _valueScales! : _keyScales!)[layer].AsSpan(offset / Q8BlockSize, length / Q8BlockSize), tile);
                return tile.Slice(0, length);
        }
    }

    /// <summary>tile[i] = quants[i] · scales[i / Q8BlockSize], 8 values at a time when blocks are made of whole vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DequantizeQ8_0(ReadOnlySpan<sbyte> quants, ReadOnlySpan<float> scales, Span<float> tile)
    {
        if (tile.Length < quants.Length)
            throw new ArgumentException($"The tile has {tile.Length} floats; {quants.Length} are needed.", nameof(tile));
        int blockSize = Q8BlockSize;
        ref byte q0 = ref Unsafe.As<sbyte, byte>(ref MemoryMarshal.GetReference(quants));
        ref float y0 = ref MemoryMarshal.GetReference(tile);
        for (int block = 0; block < scales.Length; block++)
        {
            float scale = scales[block];
            int i = block * blockSize, end = i + blockSize;
            if (blockSize % 8 == 0)
            {
                for (; i < end; i += 8)
                {
                    // 8 int8 → 8 int32 → 8 floats, times the block's scale
                    Vector128<short> widened = Vector128.WidenLower(Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<long>(ref Unsafe.Add(ref q0, i))).AsSByte());
                    (Vector256.ConvertToSingle(Vector256.WidenLower(widened.ToVector256Unsafe())) * scale).StoreUnsafe(ref y0, (nuint)i);
                }
            }
            for (; i < end; i++)
                Unsafe.Add(ref y0, i) = (sbyte)Unsafe.Add(ref q0, i) * scale;
        }
    }

    /// <summary>
    /// Drops positions [<paramref name="keep"/>, keep + <paramref name="discard"/>) of the first
    /// <paramref name="used"/> and moves the later ones down by <paramref name="discard"/>, in every layer and head.
    /// The moved keys still carry their old rotary positions: the caller re-rotates them (<see cref="KeyRows"/>, or <see cref="KeyTile"/> and <see cref="WriteKeys"/>).
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
                int from = (head * MaxContext + keep + discard) * HeadDim, to = (head * MaxContext + keep) * HeadDim, length = moved * HeadDim;
                switch (Format)
                {
                    case KvCacheFormat.F32:
                        MoveDown(_keysF32![layer], from, to, length);
                        MoveDown(_valuesF32![layer], from, to, length);
                        break;
                    case KvCacheFormat.F16:
                        MoveDown(_keysF16![layer], from, to, length);
                        MoveDown(_valuesF16![layer], from, to, length);
                        break;
                    default:
                        MoveDown(_keyQuants![layer], from, to, length);
                        MoveDown(_valueQuants![layer], from, to, length);
                        MoveDown(_keyScales![layer], from / Q8BlockSize, to / Q8BlockSize, length / Q8BlockSize);
                        MoveDown(_valueScales![layer], from / Q8BlockSize, to / Q8BlockSize, length / Q8BlockSize);
                        break;
                }
            }
        }
    }

    private static void MoveDown<T>(T[] array, int from, int to, int length) => array.AsSpan(from, length).CopyTo(array.AsSpan(to));

    /// <summary>
    /// Writes the first <paramref name="positions"/> positions, layer by layer and head by head (keys then values; for
    /// Q8_0 each one's quants then its scales), in <see cref="Format"/>'s little-endian elements; <see cref="Read"/> reads them back.
    /// </summary>
    public void Write(Stream stream, int positions)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfNegative(positions);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(positions, MaxContext);
        ForEachHeadBytes(positions, bytes => stream.Write(bytes));
    }

    /// <summary>Reads what <see cref="Write"/> wrote for <paramref name="positions"/> positions (into a cache of the same format).</summary>
    /// <exception cref="InvalidDataException">The stream ends early.</exception>
    public void Read(Stream stream, int positions)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfNegative(positions);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(positions, MaxContext);
        ForEachHeadBytes(positions, bytes => ReadExactly(stream, bytes));
    }

    private delegate void BytesAction(Span<byte> bytes);

    /// <summary>The stored bytes of the first <paramref name="positions"/> positions, in the order of <see cref="Write"/>.</summary>
    private void ForEachHeadBytes(int positions, BytesAction action)
    {
        for (int layer = 0; layer < LayerCount; layer++)
        {
            for (int head = 0; head < KvHeadCount; head++)
            {
                int offset = head * MaxContext * HeadDim, length = positions * HeadDim;
                switch (Format)
                {
                    case KvCacheFormat.F32:
                        action(MemoryMarshal.AsBytes(_keysF32![layer].AsSpan(offset, length)));
                        action(MemoryMarshal.AsBytes(_valuesF32![layer].AsSpan(offset, length)));
                        break;
                    case KvCacheFormat.F16:
                        action(MemoryMarshal.AsBytes(_keysF16![layer].AsSpan(offset, length)));
                        action(MemoryMarshal.AsBytes(_valuesF16![layer].AsSpan(offset, length)));
                        break;
                    default:
                        action(MemoryMarshal.AsBytes(_keyQuants![layer].AsSpan(offset, length)));
                        action(MemoryMarshal.AsBytes(_keyScales![layer].AsSpan(offset / Q8BlockSize, length / Q8BlockSize)));
                        action(MemoryMarshal.AsBytes(_valueQuants![layer].AsSpan(offset, length)));
                        action(MemoryMarshal.AsBytes(_valueScales![layer].AsSpan(offset / Q8BlockSize, length / Q8BlockSize)));
                        break;
                }
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
