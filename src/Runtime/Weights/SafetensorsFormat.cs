using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Text.Json;

namespace Llama.Compiled;

/// <summary>
/// Reads the safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
/// header length N, N bytes of UTF-8 JSON mapping tensor names to dtype, shape and data_offsets
/// (relative to the byte after the header), then the data. Also reads the sharded
/// <c>model.safetensors.index.json</c>. Everything in a file is untrusted: each problem is a
/// <see cref="ModelFormatException"/> naming the file and the tensor.
/// </summary>
internal static unsafe class SafetensorsFormat
{
    /// <summary>
    /// Upper bound for a header or an index file. Real headers are a few hundred bytes per tensor
    /// (the Rust reference implementation uses the same 100 MB cap); a larger value means corruption.
    /// </summary>
    private const long MaxHeaderLength = 100L * 1024 * 1024;

    /// <summary>
    /// Upper bound for a tensor's rank, so that a corrupted header cannot make the reader allocate
    /// a huge shape array. Real models use at most 4 dimensions.
    /// </summary>
    private const int MaxRank = 32;

    /// <summary>Parses and validates the header of a mapped safetensors file.</summary>
    public static List<TensorInfo> ReadTensors(MappedFile file)
    {
        if (file.Length < 8)
            throw new ModelFormatException($"{file.Path}: the file is {file.Length} bytes long; a safetensors file starts with an 8-byte header length");

        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(file.Pointer, 8));
        if (headerLength > (ulong)(file.Length - 8))
            throw new ModelFormatException($"{file.Path}: the header length {headerLength} exceeds the file size ({file.Length} bytes): the file is truncated or not a safetensors file");
        if (headerLength > MaxHeaderLength)
            throw new ModelFormatException($"{file.Path}: the header length {headerLength} is larger than the {MaxHeaderLength}-byte limit: the file is corrupted");

        long dataStart = 8 + (long)headerLength;
        var header = new ReadOnlySpan<byte>(file.Pointer + 8, (int)headerLength);
        try
        {
            return ParseHeader(header, file, dataStart);
        }
        // Utf8JsonReader reports malformed JSON as JsonException and invalid UTF-8 in a string as
        // InvalidOperationException (from GetString); both mean a corrupted header.
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new ModelFormatException($"{file.Path}: the safetensors header is not valid JSON: {e.Message}", e);
        }
    }

    /// <summary>
    /// Parses a <c>model.safetensors.index.json</c>: returns its <c>weight_map</c> (tensor name → shard
    /// file name) in file order. The shard names are validated to be plain file names in the index's folder.
    /// </summary>
    public static List<KeyValuePair<string, string>> ReadIndex(string indexPath)
    {
        long length = new FileInfo(indexPath).Length;
        if (length > MaxHeaderLength)
            throw new ModelFormatException($"{indexPath}: the index is {length} bytes, larger than the {MaxHeaderLength}-byte limit");
        byte[] json = File.ReadAllBytes(indexPath);
        try
        {
            return ParseIndex(json, indexPath);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new ModelFormatException($"{indexPath}: the index is not valid JSON: {e.Message}", e);
        }
    }

    private static List<TensorInfo> ParseHeader(ReadOnlySpan<byte> header, MappedFile file, long dataStart)
    {
        long dataSize = file.Length - dataStart;
        var reader = new Utf8JsonReader(header);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            throw new ModelFormatException($"{file.Path}: the safetensors header is not a JSON object");

        var tensors = new List<TensorInfo>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            string name = reader.GetString()!; // inside an object the reader only yields property names
            if (!seen.Add(name))
                throw new ModelFormatException($"{file.Path}: the header lists \"{name}\" twice");
            reader.Read();
            if (name == "__metadata__")
            {
                // Free-form string → string pairs; nothing in them is needed to load the weights.
                reader.Skip();
                continue;
            }
            tensors.Add(ParseTensor(ref reader, name, file, dataStart, dataSize));
        }
        // Only trailing whitespace (the format pads the header with spaces) may follow the object;
        // anything else makes Read throw.
        if (reader.Read())
            throw new ModelFormatException($"{file.Path}: unexpected content after the safetensors header object");
        return tensors;
    }

    private static TensorInfo ParseTensor(ref Utf8JsonReader reader, string name, MappedFile file, long dataStart, long dataSize)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw TensorError(file, name, "its header entry is not a JSON object");

        string? dtype = null;
        long[]? shape = null;
        long[]? offsets = null;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            if (reader.ValueTextEquals("dtype"u8))
            {
                reader.Read();
                if (dtype is not null || reader.TokenType != JsonTokenType.String)
                    throw TensorError(file, name, "needs exactly one \"dtype\" string");
                dtype = reader.GetString()!;
            }
            else if (reader.ValueTextEquals("shape"u8))
            {
                reader.Read();
                if (shape is not null)
                    throw TensorError(file, name, "has two \"shape\" entries");
                shape = ReadNonNegativeIntegers(ref reader, file, name, "shape", MaxRank);
            }
            else if (reader.ValueTextEquals("data_offsets"u8))
            {
                reader.Read();
                if (offsets is not null)
                    throw TensorError(file, name, "has two \"data_offsets\" entries");
                offsets = ReadNonNegativeIntegers(ref reader, file, name, "data_offsets", 2);
                if (offsets.Length != 2)
                    throw TensorError(file, name, "\"data_offsets\" must be [begin, end]");
            }
            else
            {
                // Unknown keys are ignored, like the reference implementation does.
                reader.Read();
                reader.Skip();
            }
        }

        if (dtype is null)
            throw TensorError(file, name, "has no \"dtype\"");
        if (shape is null)
            throw TensorError(file, name, "has no \"shape\"");
        if (offsets is null)
            throw TensorError(file, name, "has no \"data_offsets\"");

        long begin = offsets[0], end = offsets[1];
        if (begin > end)
            throw TensorError(file, name, $"data_offsets [{begin}, {end}] begin after they end");
        if (end > dataSize)
            throw TensorError(file, name, $"data_offsets [{begin}, {end}] run past the end of the data ({dataSize} bytes): the file is truncated or corrupted");

        // The size check needs the element size; tensors of a dtype unknown here keep only the range
        // check and are rejected if the model ever asks for them.
        int elementSize = ElementSize(dtype);
        if (elementSize != 0)
        {
            long expectedBytes;
            try
            {
                expectedBytes = checked(ElementCount(shape) * elementSize);
            }
            catch (OverflowException)
            {
                throw TensorError(file, name, $"shape {FormatShape(shape)} is too large");
            }
            if (expectedBytes != end - begin)
                throw TensorError(file, name, $"shape {FormatShape(shape)} of {dtype} needs {expectedBytes} bytes but data_offsets [{begin}, {end}] hold {end - begin}");
        }
        return new TensorInfo(name, dtype, shape, file, dataStart + begin, end - begin);
    }

    private static List<KeyValuePair<string, string>> ParseIndex(ReadOnlySpan<byte> json, string indexPath)
    {
        var reader = new Utf8JsonReader(json);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            throw new ModelFormatException($"{indexPath}: the index is not a JSON object");

        List<KeyValuePair<string, string>>? weightMap = null;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            bool isWeightMap = reader.ValueTextEquals("weight_map"u8);
            reader.Read();
            if (!isWeightMap)
            {
                reader.Skip(); // "metadata" (total_size, ...) is not needed
                continue;
            }
            if (weightMap is not null || reader.TokenType != JsonTokenType.StartObject)
                throw new ModelFormatException($"{indexPath}: the index needs exactly one \"weight_map\" object");

            weightMap = [];
            var seen = new HashSet<string>(StringComparer.Ordinal);
            while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
            {
                string name = reader.GetString()!;
                if (!seen.Add(name))
                    throw new ModelFormatException($"{indexPath}: the weight_map lists tensor {name} twice");
                reader.Read();
                if (reader.TokenType != JsonTokenType.String)
                    throw new ModelFormatException($"{indexPath}: the weight_map entry of tensor {name} is not a file name");
                string shard = reader.GetString()!;
                // A shard must be a file beside the index: a path would let the index point anywhere.
                if (shard.Length == 0 || shard is "." or ".." || System.IO.Path.GetFileName(shard) != shard || shard.Contains('\\'))
                    throw new ModelFormatException($"{indexPath}: the weight_map maps tensor {name} to \"{shard}\", which is not a file name in the index's folder");
                weightMap.Add(new(name, shard));
            }
        }
        if (reader.Read())
            throw new ModelFormatException($"{indexPath}: unexpected content after the index object");
        if (weightMap is null || weightMap.Count == 0)
            throw new ModelFormatException($"{indexPath}: the index has no \"weight_map\" entries");
        return weightMap;
    }

    /// <summary>Reads a JSON array of at most <paramref name="maxCount"/> non-negative 64-bit integers.</summary>
    private static long[] ReadNonNegativeIntegers(ref Utf8JsonReader reader, MappedFile file, string tensor, string key, int maxCount)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
            throw TensorError(file, tensor, $"\"{key}\" is not an array");
        var values = new List<long>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (values.Count == maxCount)
                throw TensorError(file, tensor, $"\"{key}\" has more than {maxCount} values");
            // TryGetInt64 fails for fractions, exponents and values beyond 64 bits.
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long value) || value < 0)
                throw TensorError(file, tensor, $"\"{key}\" must hold non-negative integers");
            values.Add(value);
        }
        return values.ToArray();
    }

    /// <summary>Bytes per element of a safetensors dtype, or 0 for a dtype this reader does not know.</summary>
    private static int ElementSize(string dtype) => dtype switch
    {
        "BOOL" or "U8" or "I8" or "F8_E5M2" or "F8_E4M3" or "F8_E8M0" => 1,
        "U16" or "I16" or "F16" or "BF16" => 2,
        "U32" or "I32" or "F32" => 4,
        "U64" or "I64" or "F64" => 8,
        _ => 0,
    };

    /// <summary>Product of the dimensions (1 for a scalar); throws <see cref="OverflowException"/> past 2^63.</summary>
    internal static long ElementCount(long[] shape)
    {
        // A zero dimension makes the tensor empty however large the other dimensions are.
        if (Array.IndexOf(shape, 0L) >= 0)
            return 0;
        long count = 1;
        foreach (long dim in shape)
            count = checked(count * dim);
        return count;
    }

    /// <summary>Formats a shape as <c>[512, 64]</c>, the notation of the error messages.</summary>
    internal static string FormatShape(ReadOnlySpan<long> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";

    private static ModelFormatException TensorError(MappedFile file, string tensor, string problem) =>
        new($"{file.Path}: tensor {tensor} {problem}");
}
