using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace Llama.Compiled;

/// <summary>
/// Reads GGUF v2/v3 files (ggml's docs/gguf.md): the header, every metadata value, the tensor table and
/// the data section, from a memory mapping. Everything in the file is untrusted: each count, length,
/// offset and size is checked against the bytes that remain before anything is allocated, so a
/// corrupted file is a <see cref="ModelFormatException"/>, never an out-of-memory or an access violation.
/// </summary>
internal static unsafe class GgufFormat
{
    /// <summary>"GGUF" read as a little-endian uint32.</summary>
    public const uint Magic = 0x46554747;

    /// <summary>Data alignment when the file has no <c>general.alignment</c>.</summary>
    public const int DefaultAlignment = 32;

    /// <summary>ggml's GGML_MAX_DIMS.</summary>
    private const int MaxDims = 4;

    /// <summary>Nesting depth allowed for arrays of arrays (real files use none).</summary>
    private const int MaxArrayDepth = 8;

    /// <summary>Largest <c>general.alignment</c> accepted (real files use 32 or 64).</summary>
    private const long MaxAlignment = 1L << 24;

    /// <summary>A parsed GGUF file: metadata and the tensor table, names as stored.</summary>
    public sealed class Contents(GgufMetadata metadata, List<TensorInfo> tensors, long dataOffset, int alignment)
    {
        public GgufMetadata Metadata { get; } = metadata;
        public List<TensorInfo> Tensors { get; } = tensors;
        public long DataOffset { get; } = dataOffset;
        public int Alignment { get; } = alignment;
    }

    /// <summary>Bytes per block and elements per block of the supported tensor types.</summary>
    public static bool TryGetTypeSize(uint type, out int blockElements, out int blockBytes, out string dtype)
    {
        switch ((GgufTensorType)type)
        {
            case GgufTensorType.F32: (blockElements, blockBytes, dtype) = (1, 4, "F32"); return true;
            case GgufTensorType.F16: (blockElements, blockBytes, dtype) = (1, 2, "F16"); return true;
            case GgufTensorType.BF16: (blockElements, blockBytes, dtype) = (1, 2, "BF16"); return true;
            case GgufTensorType.Q8_0: (blockElements, blockBytes, dtype) = (32, 34, "Q8_0"); return true;
            case GgufTensorType.Q4_0: (blockElements, blockBytes, dtype) = (32, 18, "Q4_0"); return true;
            case GgufTensorType.Q4_1: (blockElements, blockBytes, dtype) = (32, 20, "Q4_1"); return true;
            case GgufTensorType.Q5_0: (blockElements, blockBytes, dtype) = (32, 22, "Q5_0"); return true;
            case GgufTensorType.Q5_1: (blockElements, blockBytes, dtype) = (32, 24, "Q5_1"); return true;
            case GgufTensorType.Q2_K: (blockElements, blockBytes, dtype) = (256, 84, "Q2_K"); return true;
            case GgufTensorType.Q3_K: (blockElements, blockBytes, dtype) = (256, 110, "Q3_K"); return true;
            case GgufTensorType.Q4_K: (blockElements, blockBytes, dtype) = (256, 144, "Q4_K"); return true;
            case GgufTensorType.Q5_K: (blockElements, blockBytes, dtype) = (256, 176, "Q5_K"); return true;
            case GgufTensorType.Q6_K: (blockElements, blockBytes, dtype) = (256, 210, "Q6_K"); return true;
            case GgufTensorType.IQ4_NL: (blockElements, blockBytes, dtype) = (32, 18, "IQ4_NL"); return true;
            default: (blockElements, blockBytes, dtype) = (0, 0, ""); return false;
        }
    }

    /// <summary>ggml's name of tensor type <paramref name="type"/>, for messages.</summary>
    public static string TypeName(uint type) => type switch
    {
        0 => "F32", 1 => "F16", 2 => "Q4_0", 3 => "Q4_1", 6 => "Q5_0", 7 => "Q5_1", 8 => "Q8_0", 9 => "Q8_1",
        10 => "Q2_K", 11 => "Q3_K", 12 => "Q4_K", 13 => "Q5_K", 14 => "Q6_K", 15 => "Q8_K",
        16 => "IQ2_XXS", 17 => "IQ2_XS", 18 => "IQ3_XXS", 19 => "IQ1_S", 20 => "IQ4_NL", 21 => "IQ3_S",
        22 => "IQ2_S", 23 => "IQ4_XS", 24 => "I8", 25 => "I16", 26 => "I32", 27 => "I64", 28 => "F64",
        29 => "IQ1_M", 30 => "BF16", 34 => "TQ1_0", 35 => "TQ2_0", 39 => "MXFP4",
        _ => $"#{type}",
    };

    /// <summary>
    /// Parses and validates <paramref name="file"/>. With <paramref name="metadataOnly"/> the tensor table is
    /// not read (a tokenizer needs only the metadata, whatever the tensor types).
    /// </summary>
    public static Contents Read(MappedFile file, bool metadataOnly = false)
    {
        var reader = new Reader(file);
        uint magic = reader.UInt32("the magic number");
        if (magic != Magic)
            throw new ModelFormatException($"{file.Path}: not a GGUF file (it does not start with \"GGUF\")");
        uint version = reader.UInt32("the version");
        if (version is 2 or 3)
        {
            // fine: v3 only added big-endian files, which announce themselves by a byte-swapped version
        }
        else if (BinaryPrimitives.ReverseEndianness(version) is 2 or 3)
            throw new ModelFormatException($"{file.Path}: big-endian GGUF files are not supported");
        else if (version == 1)
            throw new ModelFormatException($"{file.Path}: GGUF version 1 is not supported (convert the model again; versions 2 and 3 are)");
        else
            throw new ModelFormatException($"{file.Path}: unknown GGUF version {version}; versions 2 and 3 are supported");

        ulong tensorCount = reader.UInt64("the tensor count");
        ulong kvCount = reader.UInt64("the metadata count");
        // A metadata entry takes at least 13 bytes (key length, type, a 1-byte value), a tensor entry
        // at least 32 (name length, rank, one dimension, type, offset): larger counts cannot be true.
        if (kvCount > (ulong)reader.Remaining / 13)
            throw new ModelFormatException($"{file.Path}: the header announces {kvCount} metadata entries, more than the {reader.Remaining} remaining bytes can hold");
        if (tensorCount > (ulong)reader.Remaining / 32)
            throw new ModelFormatException($"{file.Path}: the header announces {tensorCount} tensors, more than the {reader.Remaining} remaining bytes can hold");

        var values = new Dictionary<string, object>(StringComparer.Ordinal);
        var keys = new string[(int)kvCount];
        for (int i = 0; i < keys.Length; i++)
        {
            string key = reader.String($"the key of metadata entry {i}");
            uint type = reader.UInt32($"the type of metadata {key}");
            object value = ReadValue(ref reader, type, key, depth: 0);
            if (!values.TryAdd(key, value))
                throw new ModelFormatException($"{file.Path}: metadata {key} appears twice");
            keys[i] = key;
        }
        var metadata = new GgufMetadata(file.Path, (int)version, values, keys);

        int alignment = DefaultAlignment;
        if (values.TryGetValue("general.alignment", out object? alignmentValue))
        {
            long? a = metadata.GetInteger("general.alignment");
            if (a is not > 0 || a > MaxAlignment || (a & (a - 1)) != 0)
                throw new ModelFormatException($"{file.Path}: general.alignment is {alignmentValue}; it must be a power of two up to {MaxAlignment}");
            alignment = (int)a.Value;
        }

        var tensors = new List<TensorInfo>();
        if (metadataOnly)
            return new Contents(metadata, tensors, 0, alignment);

        var pending = new List<(string Name, long[] Shape, string DType, ulong Offset, long Bytes)>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (ulong t = 0; t < tensorCount; t++)
        {
            string name = reader.String($"the name of tensor {t}");
            if (!names.Add(name))
                throw new ModelFormatException($"{file.Path}: tensor {name} appears twice");
            uint rank = reader.UInt32($"the rank of tensor {name}");
            if (rank is 0 or > MaxDims)
                throw new ModelFormatException($"{file.Path}: tensor {name} has {rank} dimensions; GGUF allows 1 to {MaxDims}");
            var shape = new long[rank];
            for (int d = 0; d < rank; d++)
            {
                ulong dim = reader.UInt64($"the dimensions of tensor {name}");
                if (dim > long.MaxValue)
                    throw new ModelFormatException($"{file.Path}: tensor {name} has dimension {dim}, which is too large");
                shape[rank - 1 - d] = (long)dim; // GGUF lists the innermost (contiguous) dimension first
            }
            uint type = reader.UInt32($"the type of tensor {name}");
            ulong offset = reader.UInt64($"the offset of tensor {name}");
            if (!TryGetTypeSize(type, out int blockElements, out int blockBytes, out string dtype))
                throw new ModelFormatException($"{file.Path}: unsupported tensor type {TypeName(type)} in tensor {name}; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL");

            long inner = shape[^1];
            if (inner % blockElements != 0)
                throw new ModelFormatException($"{file.Path}: tensor {name} of type {dtype} has rows of {inner} elements, not a multiple of its {blockElements}-element blocks");
            long bytes;
            try
            {
                bytes = checked(inner / blockElements * blockBytes);
                for (int d = 0; d < rank - 1; d++)
                    bytes = checked(bytes * shape[d]);
            }
            catch (OverflowException)
            {
                throw new ModelFormatException($"{file.Path}: tensor {name} has shape {SafetensorsFormat.FormatShape(shape)}, which is too large");
            }
            if (offset % (ulong)alignment != 0)
                throw new ModelFormatException($"{file.Path}: tensor {name} starts at data offset {offset}, not a multiple of the alignment {alignment}");
            pending.Add((name, shape, dtype, offset, bytes));
        }

        // The data section starts at the next multiple of the alignment after the tensor table.
        long dataOffset = reader.Position + (alignment - reader.Position % alignment) % alignment;
        if (dataOffset > file.Length && pending.Count > 0)
            throw new ModelFormatException($"{file.Path}: the file ends at byte {file.Length}, before its data section (byte {dataOffset}): the file is truncated");
        long dataSize = Math.Max(0, file.Length - dataOffset);
        foreach ((string name, long[] shape, string dtype, ulong offset, long bytes) in pending)
        {
            if (offset > (ulong)dataSize || (ulong)bytes > (ulong)dataSize - offset)
                throw new ModelFormatException($"{file.Path}: tensor {name} ({dtype} {SafetensorsFormat.FormatShape(shape)}, {bytes} bytes at data offset {offset}) runs past the end of the data section ({dataSize} bytes): the file is truncated or corrupted");
            tensors.Add(new TensorInfo(name, dtype, shape, file, dataOffset + (long)offset, bytes));
        }
        return new Contents(metadata, tensors, dataOffset, alignment);
    }

    private static object ReadValue(ref Reader reader, uint type, string key, int depth)
    {
        switch (type)
        {
            case 0: return reader.Bytes(1, key)[0];
            case 1: return (sbyte)reader.Bytes(1, key)[0];
            case 2: return BinaryPrimitives.ReadUInt16LittleEndian(reader.Bytes(2, key));
            case 3: return BinaryPrimitives.ReadInt16LittleEndian(reader.Bytes(2, key));
            case 4: return BinaryPrimitives.ReadUInt32LittleEndian(reader.Bytes(4, key));
            case 5: return BinaryPrimitives.ReadInt32LittleEndian(reader.Bytes(4, key));
            case 6: return BinaryPrimitives.ReadSingleLittleEndian(reader.Bytes(4, key));
            case 7: return Bool(ref reader, key);
            case 8: return reader.String(key);
            case 9: return ReadArray(ref reader, key, depth);
            case 10: return BinaryPrimitives.ReadUInt64LittleEndian(reader.Bytes(8, key));
            case 11: return BinaryPrimitives.ReadInt64LittleEndian(reader.Bytes(8, key));
            case 12: return BinaryPrimitives.ReadDoubleLittleEndian(reader.Bytes(8, key));
            default: throw new ModelFormatException($"{reader.Path}: metadata {key} has unknown value type {type}");
        }
    }

    private static bool Bool(ref Reader reader, string key)
    {
        byte b = reader.Bytes(1, key)[0];
        if (b > 1)
            throw new ModelFormatException($"{reader.Path}: metadata {key} is a bool stored as {b}; only 0 and 1 are valid");
        return b == 1;
    }

    private static object ReadArray(ref Reader reader, string key, int depth)
    {
        if (depth >= MaxArrayDepth)
            throw new ModelFormatException($"{reader.Path}: metadata {key} nests arrays more than {MaxArrayDepth} deep");
        uint elementType = reader.UInt32(key);
        ulong count = reader.UInt64(key);
        int minSize = elementType switch
        {
            0 or 1 or 7 => 1,
            2 or 3 => 2,
            4 or 5 or 6 => 4,
            8 or 10 or 11 or 12 => 8,
            9 => 12,
            _ => throw new ModelFormatException($"{reader.Path}: metadata {key} is an array of unknown value type {elementType}"),
        };
        if (count > (ulong)reader.Remaining / (ulong)minSize)
            throw new ModelFormatException($"{reader.Path}: metadata {key} is an array of {count} elements, more than the {reader.Remaining} remaining bytes can hold");
        if (count > int.MaxValue)
            throw new ModelFormatException($"{reader.Path}: metadata {key} is an array of {count} elements; at most {int.MaxValue} are supported");
        int n = (int)count;

        switch (elementType)
        {
            case 0: return reader.Bytes(n, key).ToArray();
            case 1: return MemoryMarshal.Cast<byte, sbyte>(reader.Bytes(n, key)).ToArray();
            case 2: return Scalars<ushort>(ref reader, n, key);
            case 3: return Scalars<short>(ref reader, n, key);
            case 4: return Scalars<uint>(ref reader, n, key);
            case 5: return Scalars<int>(ref reader, n, key);
            case 6: return Scalars<float>(ref reader, n, key);
            case 7:
                var bools = new bool[n];
                for (int i = 0; i < n; i++)
                    bools[i] = Bool(ref reader, key);
                return bools;
            case 8:
                var strings = new string[n];
                for (int i = 0; i < n; i++)
                    strings[i] = reader.String(key);
                return strings;
            case 9:
                var arrays = new object[n];
                for (int i = 0; i < n; i++)
                {
                    arrays[i] = ReadArray(ref reader, key, depth + 1);
                }
                return arrays;
            case 10: return Scalars<ulong>(ref reader, n, key);
            case 11: return Scalars<long>(ref reader, n, key);
            default: return Scalars<double>(ref reader, n, key);
        }
    }

    /// <summary>Little-endian scalars (the runtime only runs on little-endian machines, as the tensor views assume).</summary>
    private static T[] Scalars<T>(ref Reader reader, int count, string key) where T : unmanaged
        => MemoryMarshal.Cast<byte, T>(reader.Bytes((long)count * sizeof(T), key)).ToArray();

    /// <summary>A bounds-checked cursor over the mapped file.</summary>
    private ref struct Reader(MappedFile file)
    {
        private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);

        private readonly byte* _start = file.Pointer;
        private readonly long _length = file.Length;

        public readonly string Path = file.Path;

        public long Position { get; private set; }

        public readonly long Remaining => _length - Position;

        public ReadOnlySpan<byte> Bytes(long count, string what)
        {
            if (count < 0 || count > Remaining)
                throw new ModelFormatException($"{Path}: the file ends at byte {_length} while reading {what}: the file is truncated or corrupted");
            if (count > int.MaxValue)
                throw new ModelFormatException($"{Path}: {what} is {count} bytes long; at most {int.MaxValue} are supported");
            var span = new ReadOnlySpan<byte>(_start + Position, (int)count);
            Position += count;
            return span;
        }

        public uint UInt32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4, what));

        public ulong UInt64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Bytes(8, what));

        public string String(string what)
        {
            ulong length = UInt64(what);
            if (length > (ulong)Remaining)
                throw new ModelFormatException($"{Path}: a string of {length} bytes in {what} runs past the end of the file ({_length} bytes): the file is truncated or corrupted");
            return Utf8.GetString(Bytes((long)length, what));
        }
    }
}
