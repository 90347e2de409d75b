using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Xunit;

namespace Llama.Compiled.Families.Tests;

/// <summary>
/// The correctness suite every model family runs: a model compiled from a tiny config of that family,
/// loaded from seeded random weights in Hugging Face safetensors, must match the independent
/// <see cref="ReferenceModel"/> to 1e-4 on every logit, for 8 greedy decode steps and for an 8-token
/// batched prefill (and the decode step after it).
/// </summary>
public abstract class FamilyTests : IDisposable
{
    private const double Tolerance = 1e-4;
    private const int Steps = 8;

    private readonly string _folder;
    private readonly ReferenceModel _reference;

    protected FamilyTests()
    {
        Config = ReferenceConfig.Load(ConfigFile);
        List<Tensor> tensors = RandomWeights.Create(Config, Seed);
        _folder = Path.Combine(Path.GetTempPath(), "llama-families-" + GetType().Name + "-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_folder);
        RandomWeights.WriteSafetensors(Path.Combine(_folder, "model.safetensors"), tensors);
        _reference = new ReferenceModel(Config, RandomWeights.ByName(tensors));
    }

    /// <summary>The config's file name in Configs/ (also the model class's [LlamaModel] path).</summary>
    protected abstract string ConfigFile { get; }

    /// <summary>Loads the compiled model class from a weights folder.</summary>
    protected abstract ILlamaModel Load(string folder);

    private protected ReferenceConfig Config { get; }

    protected virtual int Seed => ConfigFile.Aggregate(17, (h, ch) => unchecked(h * 31 + ch));

    public void Dispose()
    {
        try
        {
            Directory.Delete(_folder, recursive: true);
        }
        catch (IOException)
        {
        }
        GC.SuppressFinalize(this);
    }

    [Fact]
    public void CompiledShapeIsTheConfigs()
    {
        using ILlamaModel model = Load(_folder);
        LlamaModelShape shape = model.Shape;
        Assert.Equal(Config.HiddenSize, shape.HiddenSize);
        Assert.Equal(Config.IntermediateSize, shape.IntermediateSize);
        Assert.Equal(Config.LayerCount, shape.LayerCount);
        Assert.Equal(Config.HeadCount, shape.HeadCount);
        Assert.Equal(Config.KvHeadCount, shape.KvHeadCount);
        Assert.Equal(Config.HeadDim, shape.HeadDim);
        Assert.Equal(Config.VocabSize, shape.VocabSize);
        Assert.Equal(Config.MaxPositions, shape.MaxContext);
        Assert.Equal(Config.Tied, shape.TiedEmbeddings);
        Assert.Equal((float)Config.RopeTheta, shape.RopeTheta);
    }

    [Fact]
    public void GreedyDecodeMatchesTheReference()
    {
        using ILlamaModel model = Load(_folder);
        using ILlamaSession session = model.CreateSession();
        var tokens = new List<int> { 1 % Config.VocabSize };
        for (int step = 0; step < Steps; step++)
        {
            float[] actual = session.Forward(tokens[^1]).ToArray();
            double[] expected = _reference.Logits(tokens);
            AssertClose(expected, actual, $"decode step {step} (position {tokens.Count - 1}, tokens [{string.Join(", ", tokens)}])");
            Assert.Equal(tokens.Count, session.Position);
            tokens.Add(ArgMax(expected));
        }
        // The greedy path must not be degenerate, or the steps test little.
        Assert.True(tokens.Distinct().Count() >= 3, $"greedy tokens [{string.Join(", ", tokens)}] repeat too much; change the seed");
    }

    [Fact]
    public void BatchedPrefillMatchesTheReference()
    {
        int[] prompt = Prompt();
        using ILlamaModel model = Load(_folder);
        using ILlamaSession session = model.CreateSession();
        float[] actual = session.Forward(prompt).ToArray();
        double[] expected = _reference.Logits(prompt);
        AssertClose(expected, actual, $"prefill of [{string.Join(", ", prompt)}]");
        Assert.Equal(prompt.Length, session.Position);

        // The decode step after the prefill reads the KV cache the prefill wrote.
        int next = ArgMax(expected);
        float[] afterPrefill = session.Forward(next).ToArray();
        AssertClose(_reference.Logits([.. prompt, next]), afterPrefill, "the decode step after the prefill");
    }

    [Fact]
    public void PrefillEqualsTokenByTokenDecode()
    {
        int[] prompt = Prompt();
        using ILlamaModel model = Load(_folder);
        using ILlamaSession batched = model.CreateSession();
        using ILlamaSession stepwise = model.CreateSession();
        float[] fromPrefill = batched.Forward(prompt).ToArray();
        float[] fromDecode = [];
        foreach (int token in prompt)
            fromDecode = stepwise.Forward(token).ToArray();
        double max = fromPrefill.Zip(fromDecode, (a, b) => (double)Math.Abs(a - b)).Max();
        Assert.True(max <= Tolerance, $"prefill and decode differ by {max}");
    }

    [Fact]
    public void BatchOfSessionsAtDifferentPositionsMatchesTheReference()
    {
        // One pass (MaxTokens 16), then several (MaxTokens 3): a prefill continuing a session, a fresh session's whole
        // prompt, and a single decode token, side by side; each against the reference of its own sequence.
        int[] prompt = Prompt();
        foreach (int maxTokens in new[] { 16, 3 })
        {
            using ILlamaModel model = Load(_folder);
            using ILlamaSession continuing = model.CreateSession();
            using ILlamaSession fresh = model.CreateSession();
            using ILlamaSession decoding = model.CreateSession();
            continuing.Forward(prompt.AsSpan(0, 3));
            decoding.Forward(prompt.AsSpan(0, 5));
            using LlamaBatch batch = model.CreateBatch(new BatchOptions { Threads = 2, MaxTokens = maxTokens });
            batch.Forward([
                new BatchItem(continuing, prompt.AsMemory(3)),
                new BatchItem(fresh, prompt),
                new BatchItem(decoding, prompt.AsMemory(5, 1)),
            ]);
            AssertClose(_reference.Logits(prompt), continuing.Logits.ToArray(), $"continued prefill, MaxTokens {maxTokens}");
            AssertClose(_reference.Logits(prompt), fresh.Logits.ToArray(), $"whole prompt, MaxTokens {maxTokens}");
            AssertClose(_reference.Logits(prompt[..6]), decoding.Logits.ToArray(), $"decode token, MaxTokens {maxTokens}");
            Assert.Equal([prompt.Length, prompt.Length, 6], new[] { continuing.Position, fresh.Position, decoding.Position });
        }
    }

    private int[] Prompt()
    {
        var rng = new Random(Seed + 1);
        return Enumerable.Range(0, Steps).Select(i => i == 0 ? 1 % Config.VocabSize : rng.Next(Config.VocabSize)).ToArray();
    }

    private static int ArgMax(double[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
                best = i;
        }
        return best;
    }

    private static void AssertClose(double[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double max = 0;
        int at = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double diff = Math.Abs(expected[i] - actual[i]);
            if (!(diff <= max))
            {
                max = diff;
                at = i;
            }
        }
        Assert.True(max <= Tolerance,
            $"{what}: max |logit diff| = {max:G4} at token {at} (expected {expected[at]:G9}, got {actual[at]:G9}), tolerance {Tolerance}");
        // Logits of order one: a tolerance of 1e-4 is then a real test (and not trivially met by zeros).
        Assert.True(expected.Max(Math.Abs) > 0.5, $"{what}: the reference logits are all near zero");
    }
}
