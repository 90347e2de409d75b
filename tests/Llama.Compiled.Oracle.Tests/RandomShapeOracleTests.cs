using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Xunit;
using Xunit.Abstractions;
using Llama.Compiled.Tools;
using Llama.Compiled.LlamaCpp;

namespace Llama.Compiled.Oracle.Tests;

/// <summary>
/// Random-weight models of several shapes (GQA ratios 1, 2, 4, 8; head_dim 8, 64, 128; tied and untied;
/// vocabularies of 512 to 32000), written as GGUF by the project's GgufWriter in F32, F16, Q8_0 and Q4_0,
/// run by the compiled classes and by llama.cpp.
/// </summary>
public sealed class RandomShapeOracleTests(ITestOutputHelper output)
{
    private const int Steps = 32;
    private const int QuantizedTokenSteps = 8;
    private const int Bos = 1;

    /// <summary>How much larger our quantized error (vs F32) may be than llama.cpp's own.</summary>
    private const float QuantizedErrorSlack = 1.5f;

    private static readonly ConcurrentDictionary<string, Lazy<string>> Files = new();
    private static readonly ConcurrentDictionary<string, Lazy<(int[] Tokens, float[][] Logits)>> References = new();

    public static TheoryData<string> AllShapes() => new(OracleShapes.All.Select(s => s.Name));

    public static TheoryData<string> Q4Shapes() => new(OracleShapes.All.Where(s => s.Loaders.ContainsKey(WeightFormat.Q4_0)).Select(s => s.Name));

    [Theory]
    [MemberData(nameof(AllShapes))]
    public void F32GreedyTokensAndLogitsMatchLlamaCpp(string name)
    {
        OracleShape shape = OracleShapes.Get(name);
        string gguf = Gguf(shape, GgufTensorType.F32);
        using var llama = new LlamaCppOracle(gguf);
        using ILlamaModel ours = shape.Loaders[WeightFormat.F32](gguf);
        OracleComparison c = OracleComparison.Run($"{name} F32", ours, llama, Bos, Steps);
        output.WriteLine(c.Summary());
        output.WriteLine(c.Table());
        c.AssertMeaningful();
        c.AssertTokensIdentical(Steps);
        c.AssertLogitsClose(1e-4f);

        // Batched prefill (a separate, tiled code path) of the same 32 tokens: the last token's logits.
        using ILlamaSession session = ours.CreateSession();
        float[] batched = session.Forward(c.Tokens).ToArray();
        float[] expected = c.LlamaLogits[^1];
        float diff = OracleComparison.MaxAbsDiff(batched, expected);
        float scale = expected.Max(Math.Abs);
        output.WriteLine($"{name} F32 batched prefill of {Steps} tokens: max |diff| vs llama.cpp {OracleComparison.F(diff)} ({OracleComparison.F(diff / scale)} × max|logit|)");
        Assert.True(diff <= 1e-4f * scale, $"{name}: batched prefill logits differ from llama.cpp by {diff} (> 1e-4 × {scale})");
    }

    [Fact]
    public void F32WithCopiedWeightsMatchesLlamaCpp()
    {
        // WeightLoading.Copy puts the tensors on cache lines, so a CPU with 512-bit vectors takes the kernels'
        // 512-bit decode loop (this shape's 65 MB stream from memory, which is where the planner emits it).
        OracleShape shape = OracleShapes.Get("gqa1-hd128-v32000-tied");
        string gguf = Gguf(shape, GgufTensorType.F32);
        using var llama = new LlamaCppOracle(gguf);
        using ILlamaModel ours = Gqa1Hd128V32000Tied.Load(gguf, WeightLoading.Copy);
        OracleComparison c = OracleComparison.Run($"{shape.Name} F32 copied", ours, llama, Bos, Steps);
        output.WriteLine(c.Summary());
        c.AssertMeaningful();
        c.AssertTokensIdentical(Steps);
        c.AssertLogitsClose(1e-4f);
    }

    [Fact]
    public void MappedWeightsOffCacheLinesGiveTheCopiedWeightsResults()
    {
        // The other decode loop: a mapped safetensors file whose data starts 32 bytes into a cache line takes the
        // 256-bit loop, its copy (on a line) the 512-bit one where the CPU has it. Same tokens, logits equal up to
        // the order of the additions.
        OracleShape shape = OracleShapes.Get("gqa1-hd128-v32000-tied");
        string path = Path.Combine(OraclePaths.Scratch, shape.Name, $"{shape.Name}-off-line.safetensors");
        WriteSafetensorsOffCacheLine(path, shape);
        using (var weights = ModelWeights.Open(path, shape.Shape))
            Assert.False(weights.GetMatrix("model.layers.0.mlp.up_proj.weight", shape.Shape.IntermediateSize, shape.Shape.HiddenSize).IsCacheLineAligned);

        using ILlamaModel mapped = Gqa1Hd128V32000Tied.Load(path);
        using ILlamaModel copied = Gqa1Hd128V32000Tied.Load(path, WeightLoading.Copy);
        using ILlamaSession mappedSession = mapped.CreateSession();
        using ILlamaSession copiedSession = copied.CreateSession();
        int token = Bos;
        for (int step = 0; step < Steps; step++)
        {
            float[] expected = copiedSession.Forward(token).ToArray();
            float[] actual = mappedSession.Forward(token).ToArray();
            float scale = expected.Max(Math.Abs);
            float diff = OracleComparison.MaxAbsDiff(actual, expected);
            Assert.True(diff <= 1e-5f * scale, $"step {step}: max |diff| {diff} (> 1e-5 × {scale})");
            token = Array.IndexOf(expected, expected.Max());
            Assert.Equal(token, Array.IndexOf(actual, actual.Max()));
        }
    }

    /// <summary>The model as F32 safetensors, with a metadata entry sized so that the tensor data starts 32 bytes into a cache line.</summary>
    private static void WriteSafetensorsOffCacheLine(string path, OracleShape shape)
    {
        if (File.Exists(path))
            return;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string partial = path + ".partial-" + Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        int padding = 0;
        while (true)
        {
            using (var writer = new SafetensorsWriter(partial))
            {
                writer.AddMetadata("padding", new string('x', padding));
                string[] names = RandomLlama.TensorNames(shape.Shape).ToArray();
                float[][] values = names.Select(n => RandomLlama.Tensor(shape.Shape, shape.Seed, n)).ToArray();
                for (int i = 0; i < names.Length; i++)
                    writer.AddTensor(names[i], "F32", ShapeOf(shape.Shape, names[i]));
                for (int i = 0; i < names.Length; i++)
                    writer.WriteTensorData(names[i], values[i]);
                writer.Finish();
            }
            long dataStart;
            using (var file = File.OpenRead(partial))
            {
                var length = new byte[8];
                file.ReadExactly(length);
                dataStart = 8 + BitConverter.ToInt64(length);
            }
            if (dataStart % 64 == 32)
                break;
            padding += (int)((32 - dataStart % 64 + 64) % 64);
        }
        File.Move(partial, path, overwrite: true);
    }

    private static long[] ShapeOf(LlamaModelShape s, string name)
    {
        int q = s.HeadCount * s.HeadDim, kv = s.KvHeadCount * s.HeadDim;
        string kind = name.StartsWith("model.layers.", StringComparison.Ordinal) ? name[(name.IndexOf('.', "model.layers.".Length) + 1)..] : name;
        return kind switch
        {
            "model.embed_tokens.weight" or "lm_head.weight" => [s.VocabSize, s.HiddenSize],
            "input_layernorm.weight" or "post_attention_layernorm.weight" or "model.norm.weight" => [s.HiddenSize],
            "self_attn.q_proj.weight" => [q, s.HiddenSize],
            "self_attn.k_proj.weight" or "self_attn.v_proj.weight" => [kv, s.HiddenSize],
            "self_attn.o_proj.weight" => [s.HiddenSize, q],
            "mlp.gate_proj.weight" or "mlp.up_proj.weight" => [s.IntermediateSize, s.HiddenSize],
            "mlp.down_proj.weight" => [s.HiddenSize, s.IntermediateSize],
            _ => throw new ArgumentException($"unknown tensor {name}", nameof(name)),
        };
    }

    [Theory]
    [MemberData(nameof(AllShapes))]
    public void F16GreedyTokensMatchLlamaCpp(string name)
    {
        // The F32-compiled model converts the F16 file at load; llama.cpp computes F16 × F16-rounded activations.
        OracleShape shape = OracleShapes.Get(name);
        string gguf = Gguf(shape, GgufTensorType.F16);
        using var llama = new LlamaCppOracle(gguf);
        using ILlamaModel ours = shape.Loaders[WeightFormat.F32](gguf);
        OracleComparison c = OracleComparison.Run($"{name} F16 file", ours, llama, Bos, Steps);
        output.WriteLine(c.Summary());
        output.WriteLine(c.Table());
        c.AssertTokensIdentical(Steps);
    }

    [Theory]
    [MemberData(nameof(AllShapes))]
    public void Q8_0MatchesLlamaCpp(string name) => Quantized(name, WeightFormat.Q8_0, GgufTensorType.Q8_0);

    [Theory]
    [MemberData(nameof(Q4Shapes))]
    public void Q4_0MatchesLlamaCpp(string name) => Quantized(name, WeightFormat.Q4_0, GgufTensorType.Q4_0);

    /// <summary>
    /// The class compiled for <paramref name="format"/> on the file stored in that format: the first greedy
    /// tokens equal llama.cpp's, and on the F32 model's token sequence its largest logit error against the
    /// F32 logits is no larger (up to <see cref="QuantizedErrorSlack"/>) than llama.cpp's own.
    /// </summary>
    private void Quantized(string name, WeightFormat format, GgufTensorType type)
    {
        OracleShape shape = OracleShapes.Get(name);
        (int[] reference, float[][] referenceLogits) = F32Reference(shape);
        string gguf = Gguf(shape, type);
        using var llama = new LlamaCppOracle(gguf);
        using ILlamaModel ours = shape.Loaders[format](gguf);

        OracleComparison greedy = OracleComparison.Run($"{name} {format}", ours, llama, Bos, Steps);
        output.WriteLine(greedy.Summary());
        output.WriteLine(greedy.Table());
        greedy.AssertTokensIdentical(QuantizedTokenSteps);

        OracleComparison onF32Tokens = OracleComparison.Run($"{name} {format} on the F32 tokens", ours, llama, Bos, Steps, reference);
        float oursError = OracleComparison.MaxDistance(onF32Tokens.OursLogits, referenceLogits);
        float llamaError = OracleComparison.MaxDistance(onF32Tokens.LlamaLogits, referenceLogits);
        output.WriteLine($"{name} {format}: max |logit − F32 llama.cpp| over {Steps} steps: ours {OracleComparison.F(oursError)}, llama.cpp {OracleComparison.F(llamaError)}, "
            + $"ratio {OracleComparison.F(oursError / llamaError)}; ours vs llama.cpp on the same file {OracleComparison.F(onF32Tokens.LargestDiff)}");
        Assert.True(oursError <= QuantizedErrorSlack * llamaError,
            $"{name} {format}: our max logit error vs F32 {oursError} > {QuantizedErrorSlack} × llama.cpp's {llamaError}");
    }

    /// <summary>The shape's GGUF file in <paramref name="type"/>, written once per test run.</summary>
    internal static string Gguf(OracleShape shape, GgufTensorType type)
    {
        string path = Path.Combine(OraclePaths.Scratch, shape.Name, $"{shape.Name}-{type.ToString().ToLowerInvariant()}.gguf");
        return Files.GetOrAdd(path, p => new Lazy<string>(() => RandomLlama.WriteGguf(p, shape.Shape, shape.Seed, type, shape.Name, shape.Architecture))).Value;
    }

    /// <summary>llama.cpp's greedy tokens and logits on the F32 file: the reference the quantized errors are measured against.</summary>
    private static (int[] Tokens, float[][] Logits) F32Reference(OracleShape shape) =>
        References.GetOrAdd(shape.Name, _ => new Lazy<(int[], float[][])>(() =>
        {
            using var llama = new LlamaCppOracle(Gguf(shape, GgufTensorType.F32));
            return llama.Greedy(Bos, Steps);
        })).Value;
}
