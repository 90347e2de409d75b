using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// <see cref="LlamaEmbeddingGenerator"/> on stories260K. The reference embedding comes another way: stories260K's classifier
/// is its token embedding E [VocabSize=512, HiddenSize=64], so each token's logits are E·h with h its final normed hidden
/// state; the session's own token-by-token logits give h back by least squares, (EᵀE)⁻¹Eᵀ·logits.
/// </summary>
public sealed class LlamaEmbeddingGeneratorTests
{
    private static readonly Tokenizer Tokenizer = LlamaTokenizers.Load(TestPaths.Stories260KHf);

    private const string Short = "Once upon a time, there was a little girl named Lily.";
    private const string Long =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. "
        + "One day, she saw a big red ball under a tree. She ran to get it, but a small dog took it first. Lily was sad, "
        + "but then the dog came back and gave her the ball. They played together all day and became best friends.";

    [Fact]
    public async Task TheEmbeddingIsTheNormalizedMeanOfTheFinalNormedHiddenStates()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var generator = model.AsEmbeddingGenerator(Tokenizer);
        int[] ids = new TextGenerator(model.CreateSession(), Tokenizer).EncodePrompt(Long);
        Assert.True(ids.Length > 64, "the text spans several prefill chunks"); // PrefillChunk is 64
        Assert.Equal(Stories260K.BosTokenId, ids[0]);

        float[] expected = ReferenceEmbedding(model, ids);
        GeneratedEmbeddings<Embedding<float>> result = await generator.GenerateAsync([Long]);
        float[] actual = result[0].Vector.ToArray();

        Assert.Equal(Stories260K.HiddenSize, actual.Length);
        double diff = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        Assert.True(diff < 1e-4, $"max |diff| {diff} from the least-squares reference");
        Assert.Equal(ids.Length, result.Usage!.InputTokenCount);
    }

    [Fact]
    public async Task EmbeddingsAreUnitVectorsReproducibleAndDifferByText()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        IEmbeddingGenerator<string, Embedding<float>> generator = model.AsEmbeddingGenerator(Tokenizer, modelId: "stories");
        try
        {
            DateTimeOffset before = DateTimeOffset.UtcNow;
            GeneratedEmbeddings<Embedding<float>> first = await generator.GenerateAsync([Short, Long, "The cat sat on the mat.", ""]);
            Assert.Equal(4, first.Count);
            foreach (Embedding<float> embedding in first)
            {
                double norm = Math.Sqrt(embedding.Vector.ToArray().Sum(v => (double)v * v));
                Assert.InRange(norm, 1 - 1e-5, 1 + 1e-5);
                Assert.Equal("stories", embedding.ModelId);
                Assert.True(embedding.CreatedAt >= before);
            }
            // Same text, same vector, whatever came before it in the session.
            ReadOnlyMemory<float> again = await generator.GenerateVectorAsync(Short);
            Assert.Equal(first[0].Vector.ToArray(), again.ToArray());
            // Different texts point elsewhere.
            for (int i = 0; i < first.Count; i++)
            {
                for (int j = 0; j < i; j++)
                    Assert.True(Cosine(first[i].Vector.Span, first[j].Vector.Span) < 0.999, $"texts {j} and {i} embed alike");
            }
            int expectedTokens = new[] { Short, Long, "The cat sat on the mat.", "" }
                .Sum(text => new TextGenerator(model.CreateSession(), Tokenizer).EncodePrompt(text).Length);
            Assert.Equal(expectedTokens, first.Usage!.InputTokenCount);

            var metadata = generator.GetService<EmbeddingGeneratorMetadata>();
            Assert.Equal(Stories260K.HiddenSize, metadata!.DefaultModelDimensions);
            Assert.Equal("stories", metadata.DefaultModelId);
            Assert.Same(model, generator.GetService<ILlamaModel>());
            Assert.Same(Tokenizer, generator.GetService<Tokenizer>());
            Assert.Null(generator.GetService<ILlamaModel>("key"));
        }
        finally
        {
            generator.Dispose();
        }
    }

    [Fact]
    public async Task TooLongTextsAreRejectedBeforeAnyWorkAndOtherErrors()
    {
        using var model = Stories260KShort.Load(TestPaths.Stories260KHf);
        using var generator = new LlamaEmbeddingGenerator(model, Tokenizer);
        string tooLong = string.Concat(Enumerable.Repeat(Long + " ", 8));
        await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateAsync([Short, tooLong]));
        await Assert.ThrowsAsync<NotSupportedException>(() => generator.GenerateAsync([Short], new EmbeddingGenerationOptions { Dimensions = 32 }));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => generator.GenerateAsync([Short], cancellationToken: new CancellationToken(true)));
        Assert.Single(await generator.GenerateAsync([Short])); // still usable
        generator.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => generator.GenerateAsync([Short]));

        using var fake = new FakeLlamaModel(16, 32, [1, 2]);
        Assert.Throws<ArgumentException>(() => fake.AsEmbeddingGenerator(Tokenizer));
    }

    [Fact]
    public async Task ConcurrentRequestsAreServedOneAtATime()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var generator = model.AsEmbeddingGenerator(Tokenizer);
        float[] expected = (await generator.GenerateVectorAsync(Long)).ToArray();
        Task<ReadOnlyMemory<float>>[] tasks = Enumerable.Range(0, 4).Select(_ => Task.Run(() => generator.GenerateVectorAsync(Long))).ToArray();
        foreach (ReadOnlyMemory<float> vector in await Task.WhenAll(tasks))
            Assert.Equal(expected, vector.ToArray());
    }

    /// <summary>The least-squares reference (see the class comment), mean and L2 norm in double.</summary>
    private static float[] ReferenceEmbedding(Stories260K model, int[] ids)
    {
        const int H = Stories260K.HiddenSize, V = Stories260K.VocabSize;
        using var weights = ModelWeights.Open(TestPaths.Stories260KHf, Stories260K.CompiledShape, WeightLoading.Copy);
        ReadOnlySpan<float> e = weights.GetMatrix("model.embed_tokens.weight", V, H).Span;
        // EᵀE [H, H] and, per token, Eᵀ·logits [H].
        var ete = new double[H, H];
        for (int i = 0; i < H; i++)
        {
            for (int j = 0; j < H; j++)
            {
                double sum = 0;
                for (int v = 0; v < V; v++)
                    sum += (double)e[v * H + i] * e[v * H + j];
                ete[i, j] = sum;
            }
        }
        var meanRhs = new double[H];
        using var session = model.CreateSession();
        foreach (int id in ids)
        {
            ReadOnlySpan<float> logits = session.Forward(id);
            for (int i = 0; i < H; i++)
            {
                double sum = 0;
                for (int v = 0; v < V; v++)
                    sum += (double)e[v * H + i] * logits[v];
                meanRhs[i] += sum / ids.Length;
            }
        }
        double[] h = Solve(ete, meanRhs); // linear: the solution of the mean is the mean of the solutions
        double norm = Math.Sqrt(h.Sum(v => v * v));
        return h.Select(v => (float)(v / norm)).ToArray();
    }

    /// <summary>Gaussian elimination with partial pivoting.</summary>
    private static double[] Solve(double[,] a, double[] b)
    {
        int n = b.Length;
        a = (double[,])a.Clone();
        b = (double[])b.Clone();
        for (int col = 0; col < n; col++)
        {
            int pivot = col;
            for (int r = col + 1; r < n; r++)
            {
                if (Math.Abs(a[r, col]) > Math.Abs(a[pivot, col]))
                    pivot = r;
            }
            for (int c = 0; c < n; c++)
                (a[col, c], a[pivot, c]) = (a[pivot, c], a[col, c]);
            (b[col], b[pivot]) = (b[pivot], b[col]);
            for (int r = col + 1; r < n; r++)
            {
                double f = a[r, col] / a[col, col];
                for (int c = col; c < n; c++)
                    a[r, c] -= f * a[col, c];
                b[r] -= f * b[col];
            }
        }
        var x = new double[n];
        for (int r = n - 1; r >= 0; r--)
        {
            double sum = b[r];
            for (int c = r + 1; c < n; c++)
                sum -= a[r, c] * x[c];
            x[r] = sum / a[r, r];
        }
        return x;
    }

    private static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }
        return dot / Math.Sqrt(na * nb);
    }
}
