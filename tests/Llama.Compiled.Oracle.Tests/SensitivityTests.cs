using System;
using System.IO;
using Xunit;
using Xunit.Abstractions;
using Llama.Compiled.Tools;
using Llama.Compiled.LlamaCpp;

namespace Llama.Compiled.Oracle.Tests;

/// <summary>
/// The random-weight models must be able to fail: a plausible bug must move the logits far more than the
/// 1e-4 × max|logit| tolerance. Checked with llama.cpp alone, on files that encode the bug.
/// </summary>
public sealed class SensitivityTests(ITestOutputHelper output)
{
    private const int Steps = 8;

    [Theory]
    [InlineData("gqa1-hd64-tied")]
    [InlineData("gqa4-hd128-tied")]
    [InlineData("gqa2-hd8-untied")]
    public void WrongRopePairingChangesTheLogits(string name)
    {
        // Writing the same weights as if they were rotate-half (Hugging Face) rows permutes q and k within each
        // head: exactly what a model that pairs (j, j + d/2) instead of (2j, 2j + 1) computes.
        OracleShape shape = OracleShapes.Get(name);
        string right = RandomShapeOracleTests.Gguf(shape, GgufTensorType.F32);
        string wrong = Path.Combine(OraclePaths.Scratch, name, $"{name}-f32-wrong-rope.gguf");
        GgufWriter.WriteLlama(wrong, shape.Shape, t => RandomLlama.Tensor(shape.Shape, shape.Seed, t), GgufTensorType.F32,
            RopeLayout.RotateHalf, RandomLlama.Vocabulary(shape.Shape.VocabSize), name);

        float relative = RelativeDistance(right, wrong, out int[] tokens);
        output.WriteLine($"{name}: wrong RoPE pairing moves the logits by {OracleComparison.F(relative)} × max|logit| over {Steps} steps");
        Assert.True(relative > 100 * 1e-4f, $"{name}: a wrong RoPE pairing changes the logits by only {relative} × max|logit|");
    }

    [Fact]
    public void WrongKvHeadMappingChangesTheLogits()
    {
        // Swapping the two KV heads of a GQA-2 model is what a kernel computes that maps query head h to
        // KV head h % KvHeadCount instead of h / GroupSize.
        OracleShape shape = OracleShapes.Get("gqa2-hd64-untied");
        LlamaModelShape s = shape.Shape;
        Assert.Equal(2, s.KvHeadCount);
        string right = RandomShapeOracleTests.Gguf(shape, GgufTensorType.F32);
        string wrong = Path.Combine(OraclePaths.Scratch, shape.Name, $"{shape.Name}-f32-swapped-kv.gguf");
        GgufWriter.WriteLlama(wrong, s, t =>
        {
            float[] values = RandomLlama.Tensor(s, shape.Seed, t);
            if (t.EndsWith("k_proj.weight", StringComparison.Ordinal) || t.EndsWith("v_proj.weight", StringComparison.Ordinal))
            {
                int head = s.HeadDim * s.HiddenSize;
                float[] swapped = new float[values.Length];
                values.AsSpan(0, head).CopyTo(swapped.AsSpan(head));
                values.AsSpan(head, head).CopyTo(swapped);
                return swapped;
            }
            return values;
        }, GgufTensorType.F32, RopeLayout.AdjacentPairs, RandomLlama.Vocabulary(s.VocabSize), shape.Name);

        float relative = RelativeDistance(right, wrong, out _);
        output.WriteLine($"{shape.Name}: swapped KV heads move the logits by {OracleComparison.F(relative)} × max|logit|");
        Assert.True(relative > 100 * 1e-4f, $"swapped KV heads change the logits by only {relative} × max|logit|");
    }

    /// <summary>max over steps of max|a − b| / max|a|, both fed a's greedy tokens.</summary>
    private static float RelativeDistance(string a, string b, out int[] tokens)
    {
        using var llamaA = new LlamaCppOracle(a);
        using var llamaB = new LlamaCppOracle(b);
        (tokens, float[][] logitsA) = llamaA.Greedy(1, Steps);
        float[][] logitsB = llamaB.TeacherForced(tokens);
        float worst = 0;
        for (int step = 0; step < Steps; step++)
        {
            float max = 0;
            foreach (float x in logitsA[step])
                max = Math.Max(max, Math.Abs(x));
            worst = Math.Max(worst, OracleComparison.MaxAbsDiff(logitsA[step], logitsB[step]) / max);
        }
        return worst;
    }
}
