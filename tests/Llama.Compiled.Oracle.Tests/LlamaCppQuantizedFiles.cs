using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Text;
using LLama;
using LLama.Native;
using Llama.Compiled.LlamaCpp;

namespace Llama.Compiled.Oracle.Tests;

/// <summary>
/// GGUF files quantized by llama.cpp's own quantizer (<c>llama_model_quantize</c>, what <c>llama-quantize</c> runs):
/// the files end-to-end tests of quantized formats load, with llama.cpp's per-tensor mixes, so that a compiled model is
/// compared with llama.cpp on exactly the weights llama.cpp itself would run.
/// </summary>
public static class LlamaCppQuantizedFiles
{
    private static readonly ConcurrentDictionary<string, Lazy<string>> Files = new();

    /// <summary>
    /// The random-weight shape <paramref name="shapeName"/> (<see cref="OracleShapes"/>) written as F32 GGUF and quantized
    /// by llama.cpp to <paramref name="ftype"/>; written once per test run into the run's scratch folder.
    /// </summary>
    /// <exception cref="InvalidOperationException">llama.cpp refuses to quantize the model to <paramref name="ftype"/>.</exception>
    public static string Get(string shapeName, LLamaFtype ftype)
    {
        OracleShape shape = OracleShapes.Get(shapeName);
        string path = Path.Combine(OraclePaths.Scratch, shape.Name, $"{shape.Name}-llamacpp-{FtypeName(ftype)}.gguf");
        return Files.GetOrAdd(path, p => new Lazy<string>(() =>
        {
            Quantize(RandomShapeOracleTests.Gguf(shape, GgufTensorType.F32), p, ftype);
            return p;
        })).Value;
    }

    /// <summary>"q4_k_m" for <see cref="LLamaFtype.MOSTLY_Q4_K_M"/>: llama-quantize's name of the type, in file names.</summary>
    public static string FtypeName(LLamaFtype ftype) => ftype.ToString().Replace("MOSTLY_", "", StringComparison.Ordinal).ToLowerInvariant();

    /// <summary>
    /// Quantizes <paramref name="source"/> (F32 or F16 GGUF) into <paramref name="destination"/> with llama.cpp, output
    /// tensor included (as <c>llama-quantize</c> does by default), one thread.
    /// </summary>
    /// <returns>False when llama.cpp refused (it logs why; see <see cref="LlamaCppOracle"/>'s log tail).</returns>
    public static bool TryQuantize(string source, string destination, LLamaFtype ftype)
    {
        LlamaCppOracle.EnsureNativeLibrary();
        Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
        string partial = destination + ".partial-" + Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (!LLamaQuantizer.Quantize(source, partial, ftype, nthread: 1, allowRequantize: false, quantizeOutputTensor: true))
        {
            File.Delete(partial);
            return false;
        }
        File.Move(partial, destination, overwrite: true);
        return true;
    }

    /// <inheritdoc cref="TryQuantize"/>
    /// <exception cref="InvalidOperationException">llama.cpp refused.</exception>
    public static void Quantize(string source, string destination, LLamaFtype ftype)
    {
        if (!TryQuantize(source, destination, ftype))
            throw new InvalidOperationException($"llama.cpp could not quantize {source} to {ftype}");
    }

    /// <summary>
    /// Every tensor's ggml type number (<c>enum ggml_type</c>: 12 is Q4_K) by name, from the file's tensor-info table.
    /// Read here rather than with the runtime's reader, which rejects the types it cannot compute with.
    /// </summary>
    public static Dictionary<string, uint> ReadTensorTypes(string path)
    {
        using var reader = new BinaryReader(File.OpenRead(path), Encoding.UTF8);
        if (reader.ReadUInt32() != 0x46554747) // "GGUF", little-endian
            throw new InvalidDataException($"{path} is not a GGUF file");
        uint version = reader.ReadUInt32();
        if (version is not (2 or 3))
            throw new InvalidDataException($"{path}: GGUF version {version}");
        ulong tensorCount = reader.ReadUInt64();
        ulong metadataCount = reader.ReadUInt64();
        for (ulong i = 0; i < metadataCount; i++)
        {
            ReadString(reader);
            SkipValue(reader, reader.ReadUInt32());
        }
        var types = new Dictionary<string, uint>(StringComparer.Ordinal);
        for (ulong i = 0; i < tensorCount; i++)
        {
            string name = ReadString(reader);
            uint dims = reader.ReadUInt32();
            for (uint d = 0; d < dims; d++)
                reader.ReadUInt64();
            types.Add(name, reader.ReadUInt32());
            reader.ReadUInt64(); // data offset
        }
        return types;
    }

    private static string ReadString(BinaryReader reader) => Encoding.UTF8.GetString(reader.ReadBytes(checked((int)reader.ReadUInt64())));

    /// <summary>Skips one metadata value of GGUF value type <paramref name="type"/>.</summary>
    private static void SkipValue(BinaryReader reader, uint type)
    {
        switch (type)
        {
            case 0 or 1 or 7: reader.ReadByte(); break;           // u8, i8, bool
            case 2 or 3: reader.ReadUInt16(); break;              // u16, i16
            case 4 or 5 or 6: reader.ReadUInt32(); break;         // u32, i32, f32
            case 10 or 11 or 12: reader.ReadUInt64(); break;      // u64, i64, f64
            case 8: ReadString(reader); break;
            case 9:
                uint elementType = reader.ReadUInt32();
                ulong count = reader.ReadUInt64();
                for (ulong i = 0; i < count; i++)
                    SkipValue(reader, elementType);
                break;
            default: throw new InvalidDataException($"unknown GGUF value type {type}");
        }
    }
}
