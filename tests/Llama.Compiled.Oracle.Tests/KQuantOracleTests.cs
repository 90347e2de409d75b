using System;
using System.Buffers.Binary;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Llama.Compiled.CompilerServices;
using Llama.Compiled.LlamaCpp;
using Xunit;

namespace Llama.Compiled.Oracle.Tests;

/// <summary>
/// llama.cpp's own block functions as the oracle, on the same bytes: ggml's <c>dequantize_row_*</c> and
/// <c>quantize_row_*_ref</c> (libggml-base) against <see cref="BlockQuantization"/>, its activation quantizers
/// <c>quantize_row_q8_K</c>/<c>_q8_1</c> and dot products <c>ggml_vec_dot_*</c> (libggml-cpu) against
/// <see cref="BlockKernels"/> and <see cref="QuantizedRows"/>. The libraries are the ones LLamaSharp loaded for this CPU.
/// InstructionSetTests runs this class again with AVX-VNNI and AVX2 hidden.
/// </summary>
public sealed unsafe class KQuantOracleTests
{
    public static readonly TheoryData<WeightFormat> Formats =
        [WeightFormat.Q4_1, WeightFormat.Q5_0, WeightFormat.Q5_1, WeightFormat.Q4_K, WeightFormat.Q5_K, WeightFormat.Q6_K];

    private static string Name(WeightFormat format) => format.ToString().ToLowerInvariant().Replace("q4_k", "q4_K").Replace("q5_k", "q5_K").Replace("q6_k", "q6_K");

    [Theory]
    [MemberData(nameof(Formats))]
    public void DequantizationMatchesGgmlBitForBit(WeightFormat format)
    {
        var dequantize = (delegate* unmanaged<byte*, float*, long, void>)Ggml.Base($"dequantize_row_{Name(format)}");
        var random = new Random(11 + (int)format);
        int blocks = 64, cols = blocks * BlockQuantization.WeightsPerBlock(format);
        byte[] row = RandomBlocks(format, blocks, random);
        float[] ours = new float[cols], theirs = new float[cols];
        BlockQuantization.Dequantize(format, row, ours);
        fixed (byte* r = row)
        fixed (float* y = theirs)
            dequantize(r, y, cols);
        for (int i = 0; i < cols; i++)
            Assert.True(BitConverter.SingleToInt32Bits(theirs[i]) == BitConverter.SingleToInt32Bits(ours[i]), $"{format} weight {i}: ggml {theirs[i]}, ours {ours[i]}");
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void ReferenceQuantizationMatchesGgmlByteForByte(WeightFormat format)
    {
        var quantize = (delegate* unmanaged<float*, byte*, long, void>)Ggml.Base($"quantize_row_{Name(format)}_ref");
        var random = new Random(13 + (int)format);
        float[] x = TrickyFloats(random, 64 * 256);
        byte[] ours = new byte[BlockQuantization.RowBytes(format, x.Length)], theirs = new byte[ours.Length];
        BlockQuantization.Quantize(format, x, ours);
        fixed (float* px = x)
        fixed (byte* y = theirs)
            quantize(px, y, x.Length);
        int blockBytes = BlockQuantization.BytesPerBlock(format);
        for (int i = 0; i < ours.Length; i++)
            Assert.True(ours[i] == theirs[i], $"{format}: byte {i % blockBytes} of block {i / blockBytes} differs: ggml {theirs[i]}, ours {ours[i]}");
    }

    [Fact]
    public void Q8KActivationsMatchGgml()
    {
        var quantize = (delegate* unmanaged<float*, byte*, long, void>)Ggml.Cpu("quantize_row_q8_K");
        var random = new Random(17);
        float[] x = TrickyFloats(random, 64 * 256);
        int blocks = x.Length / 256;
        sbyte[] q = new sbyte[x.Length];
        float[] d = new float[blocks];
        short[] bsums = new short[x.Length / 16];
        BlockKernels.QuantizeQ8K(x, q, d, bsums);
        byte[] theirs = new byte[blocks * Q8KBytes];
        fixed (float* px = x)
        fixed (byte* y = theirs)
            quantize(px, y, x.Length);
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> block = theirs.AsSpan(b * Q8KBytes, Q8KBytes);
            Assert.Equal(BinaryPrimitives.ReadSingleLittleEndian(block), d[b]);
            Assert.Equal(MemoryMarshal.Cast<byte, sbyte>(block.Slice(4, 256)).ToArray(), q.AsSpan(256 * b, 256).ToArray());
            if (d[b] != 0f) // ggml leaves a zero block's bsums unwritten
                Assert.Equal(MemoryMarshal.Cast<byte, short>(block.Slice(260, 32)).ToArray(), bsums.AsSpan(16 * b, 16).ToArray());
        }
    }

    [Fact]
    public void Q8_1ActivationsMatchGgml()
    {
        var quantize = (delegate* unmanaged<float*, byte*, long, void>)Ggml.Cpu("quantize_row_q8_1");
        var random = new Random(19);
        float[] x = TrickyFloats(random, 256 * 32);
        int blocks = x.Length / 32;
        sbyte[] q = new sbyte[x.Length];
        float[] d = new float[blocks], s = new float[blocks];
        BlockKernels.QuantizeQ8_1(x, q, d, s);
        byte[] theirs = new byte[blocks * 36];
        fixed (float* px = x)
        fixed (byte* y = theirs)
            quantize(px, y, x.Length);
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> block = theirs.AsSpan(b * 36, 36);
            Assert.Equal((float)BinaryPrimitives.ReadHalfLittleEndian(block), d[b]);
            Assert.Equal((float)BinaryPrimitives.ReadHalfLittleEndian(block.Slice(2)), s[b]);
            Assert.Equal(MemoryMarshal.Cast<byte, sbyte>(block.Slice(4, 32)).ToArray(), q.AsSpan(32 * b, 32).ToArray());
        }
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void RowDotProductsMatchGgml(WeightFormat format)
    {
        string activation = format switch { WeightFormat.Q5_0 => "q8_0", WeightFormat.Q4_1 or WeightFormat.Q5_1 => "q8_1", _ => "q8_K" };
        var dot = (delegate* unmanaged<int, float*, nuint, byte*, nuint, byte*, nuint, int, void>)Ggml.Cpu($"ggml_vec_dot_{Name(format)}_{activation}");
        var quantize = (delegate* unmanaged<float*, byte*, long, void>)Ggml.Cpu($"quantize_row_{activation}");
        int perBlock = BlockQuantization.WeightsPerBlock(format);
        var random = new Random(23 + (int)format);
        foreach (int blocks in new[] { 1, 3, 8, 22 })
        {
            int cols = blocks * perBlock;
            for (int trial = 0; trial < 6; trial++)
            {
                byte[] row = trial % 2 == 0 ? RandomBlocks(format, blocks, random) : QuantizedRow(format, cols, random);
                float[] x = Enumerable.Range(0, 4 * cols).Select(_ => trial >= 4 ? MathF.Abs(Gaussian(random)) + 0.5f : Gaussian(random)).ToArray();
                float[] w = new float[cols];
                BlockQuantization.Dequantize(format, row, w);

                // Our activations for 4 tokens; ggml's from its own quantizer, token by token.
                sbyte[] q = new sbyte[x.Length];
                int scalesPerToken = cols / (activation == "q8_K" ? 256 : 32);
                float[] scales = new float[4 * scalesPerToken], floatSums = new float[scales.Length];
                int[] intSums = new int[scales.Length];
                short[] bsums = new short[x.Length / 16];
                if (activation == "q8_K")
                    BlockKernels.QuantizeQ8K(x, q, scales, bsums);
                else if (activation == "q8_0")
                    BlockKernels.QuantizeBlocks(x, q, scales, intSums);
                else
                    BlockKernels.QuantizeQ8_1(x, q, scales, floatSums);

                ref byte r = ref row[0];
                Vector128<float>? four = format switch // Q6_K has no 4-token row: its prefill runs generated tiles
                {
                    WeightFormat.Q4_1 => QuantizedRows.Q4_1Row4(ref r, blocks, ref q[0], ref scales[0], ref floatSums[0], cols),
                    WeightFormat.Q5_0 => QuantizedRows.Q5_0Row4(ref r, blocks, ref q[0], ref scales[0], ref intSums[0], cols),
                    WeightFormat.Q5_1 => QuantizedRows.Q5_1Row4(ref r, blocks, ref q[0], ref scales[0], ref floatSums[0], cols),
                    WeightFormat.Q4_K => QuantizedRows.Q4_KRow4(ref r, blocks, ref q[0], ref scales[0], ref bsums[0], cols),
                    WeightFormat.Q5_K => QuantizedRows.Q5_KRow4(ref r, blocks, ref q[0], ref scales[0], ref bsums[0], cols),
                    _ => null,
                };
                for (int t = 0; t < 4; t++)
                {
                    int s = t * scalesPerToken;
                    float one = format switch
                    {
                        WeightFormat.Q4_1 => QuantizedRows.Q4_1Row(ref r, blocks, ref q[t * cols], ref scales[s], ref floatSums[s]),
                        WeightFormat.Q5_0 => QuantizedRows.Q5_0Row(ref r, blocks, ref q[t * cols], ref scales[s], ref intSums[s]),
                        WeightFormat.Q5_1 => QuantizedRows.Q5_1Row(ref r, blocks, ref q[t * cols], ref scales[s], ref floatSums[s]),
                        WeightFormat.Q4_K => QuantizedRows.Q4_KRow(ref r, blocks, ref q[t * cols], ref scales[s], ref bsums[s * 16]),
                        WeightFormat.Q5_K => QuantizedRows.Q5_KRow(ref r, blocks, ref q[t * cols], ref scales[s], ref bsums[s * 16]),
                        _ => QuantizedRows.Q6_KRow(ref r, blocks, ref q[t * cols], ref scales[s], ref bsums[s * 16]),
                    };
                    byte[] y = new byte[scalesPerToken * (activation == "q8_K" ? Q8KBytes : activation == "q8_0" ? 34 : 36)];
                    float theirs;
                    fixed (float* px = &x[t * cols])
                    fixed (byte* py = y)
                    fixed (byte* pw = row)
                    {
                        quantize(px, py, cols);
                        dot(cols, &theirs, 0, pw, 0, py, 0, 1);
                    }
                    double magnitude = 0;
                    for (int i = 0; i < cols; i++)
                        magnitude += Math.Abs((double)w[i] * x[t * cols + i]);
                    string where = $"{format} × {blocks} blocks, trial {trial}, token {t}";
                    Assert.True(Math.Abs(one - theirs) <= 2e-6 * magnitude, $"{where}: ours {one}, ggml {theirs} (Σ|w·x| {magnitude})");
                    if (four is { } rows4)
                        Assert.True(Math.Abs(rows4[t] - theirs) <= 2e-6 * magnitude, $"{where}: ours (4 tokens) {rows4[t]}, ggml {theirs} (Σ|w·x| {magnitude})");
                }
            }
        }
    }

    /// <summary>sizeof(block_q8_K): float d, 256 int8, 16 int16 sums.</summary>
    private const int Q8KBytes = 4 + 256 + 32;

    /// <summary>
    /// Gaussian values per 256-block with a different character each: plain, a block of zeros, equal values, one huge
    /// outlier, tiny values (F16 subnormal scales), all positive, all negative, a ramp, and halves of zeros.
    /// </summary>
    private static float[] TrickyFloats(Random random, int n)
    {
        float[] x = new float[n];
        for (int b = 0; b < n / 256; b++)
        {
            Span<float> block = x.AsSpan(256 * b, 256);
            float scale = (float)Math.Pow(10, random.Next(-3, 2));
            for (int i = 0; i < 256; i++)
                block[i] = Gaussian(random) * scale;
            switch (b % 10)
            {
                case 1: block.Clear(); break;
                case 2: block.Fill(0.125f * scale); break;
                case 3: block[random.Next(256)] = 1000f * scale; break;
                case 4: for (int i = 0; i < 256; i++) block[i] *= 1e-6f; break;
                case 5: for (int i = 0; i < 256; i++) block[i] = MathF.Abs(block[i]) + scale; break;
                case 6: for (int i = 0; i < 256; i++) block[i] = -MathF.Abs(block[i]) - scale; break;
                case 7: for (int i = 0; i < 256; i++) block[i] = (i - 128) * scale / 64; break;
                case 8: block.Slice(0, 128).Clear(); break;
                case 9: block.Slice(0, 16).Fill(-2 * scale); block.Slice(16, 16).Clear(); break;
            }
        }
        return x;
    }

    private static byte[] RandomBlocks(WeightFormat format, int blocks, Random random)
    {
        int bytes = BlockQuantization.BytesPerBlock(format);
        byte[] row = new byte[blocks * bytes];
        random.NextBytes(row);
        int[] halves = format switch { WeightFormat.Q5_0 => [0], WeightFormat.Q6_K => [208], _ => [0, 2] };
        for (int b = 0; b < blocks; b++)
        {
            foreach (int offset in halves)
                BinaryPrimitives.WriteHalfLittleEndian(row.AsSpan(b * bytes + offset), (Half)((random.NextDouble() * 2 - 1) * 0.01));
        }
        return row;
    }

    private static byte[] QuantizedRow(WeightFormat format, int cols, Random random)
    {
        float[] x = Enumerable.Range(0, cols).Select(_ => Gaussian(random) * 0.02f).ToArray();
        byte[] row = new byte[BlockQuantization.RowBytes(format, cols)];
        BlockQuantization.Quantize(format, x, row);
        return row;
    }

    private static float Gaussian(Random random) =>
        (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));

    /// <summary>ggml's libraries as LLamaSharp loaded them (the build for this CPU), found in the process's mappings.</summary>
    private static class Ggml
    {
        private static readonly nint s_base = Load("libggml-base.so");
        private static readonly nint s_cpu = Load("libggml-cpu.so");

        public static nint Base(string name) => NativeLibrary.GetExport(s_base, name);

        public static nint Cpu(string name) => NativeLibrary.GetExport(s_cpu, name);

        private static nint Load(string file)
        {
            LlamaCppOracle.EnsureNativeLibrary();
            string? path = File.ReadLines("/proc/self/maps")
                .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                .Where(f => f.Length >= 6 && Path.GetFileName(f[5]) == file)
                .Select(f => f[5])
                .FirstOrDefault();
            Assert.True(path is not null, $"{file} is not loaded after LLamaSharp loaded llama.cpp");
            nint handle = NativeLibrary.Load(path!);
            if (file == "libggml-cpu.so")
                ((delegate* unmanaged<void>)NativeLibrary.GetExport(handle, "ggml_cpu_init"))(); // fills ggml's F16 tables; idempotent
            return handle;
        }
    }
}
