using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>
/// Text embeddings from a compiled model, as <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/>: a text's embedding is
/// the mean over its tokens (encoded as <see cref="TextGenerator.EncodePrompt(string)"/> does, BOS first) of the model's
/// final hidden state after the final RMSNorm ⊙ model.norm — the classifier's input — L2-normalized, as llama.cpp's
/// server and OpenAI return them. Its length is the model's HiddenSize.
/// </summary>
/// <remarks>
/// The generator runs the model in a session of its own (a KV cache of MaxContext positions); requests are served one at a
/// time, concurrent calls wait for each other. Each text is evaluated in prefill chunks without computing logits;
/// cancellation is honoured between chunks. A text longer than MaxContext tokens is an <see cref="ArgumentException"/>,
/// thrown before any text of the call is evaluated.
/// </remarks>
public sealed class LlamaEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    /// <summary>The provider name in <see cref="Metadata"/>.</summary>
    public const string ProviderName = "Llama.Compiled";

    private readonly LlamaSession _session;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private bool _disposed;

    /// <summary>Creates a generator that runs <paramref name="model"/> in a session of its own.</summary>
    /// <param name="model">A compiled model (a class marked with <see cref="LlamaModelAttribute"/>); not disposed by the generator.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="modelId">The model id reported in embeddings and <see cref="Metadata"/> (default: the model class's name).</param>
    /// <exception cref="ArgumentException"><paramref name="model"/> is not a compiled model: the embeddings are its hidden states.</exception>
    public LlamaEmbeddingGenerator(ILlamaModel model, Tokenizer tokenizer, string? modelId = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (model is not LlamaModel)
            throw new ArgumentException($"Embeddings are a compiled model's hidden states; {model.GetType().Name} is not a class marked [LlamaModel].", nameof(model));
        Model = model;
        Tokenizer = tokenizer;
        ModelId = modelId ?? model.GetType().Name;
        Metadata = new EmbeddingGeneratorMetadata(ProviderName, providerUri: null, defaultModelId: ModelId, defaultModelDimensions: model.Shape.HiddenSize);
        _session = (LlamaSession)model.CreateSession();
    }

    /// <summary>The model the generator runs.</summary>
    public ILlamaModel Model { get; }

    /// <summary>The model's tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>The model id reported in embeddings.</summary>
    public string ModelId { get; }

    /// <summary>Provider name, model id, dimensions (HiddenSize).</summary>
    public EmbeddingGeneratorMetadata Metadata { get; }

    /// <summary>Embeds each of <paramref name="values"/>, in order.</summary>
    /// <exception cref="ArgumentException">A text is null or longer than MaxContext tokens; nothing is evaluated.</exception>
    /// <exception cref="NotSupportedException"><paramref name="options"/> asks for other dimensions than HiddenSize.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (checked between chunks).</exception>
    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        LlamaModelShape shape = Model.Shape;
        if (options?.Dimensions is int dimensions && dimensions != shape.HiddenSize)
            throw new NotSupportedException($"The embeddings of {ModelId} have {shape.HiddenSize} dimensions, not {dimensions}.");
        var texts = new List<int[]>();
        foreach (string value in values)
        {
            if (value is null)
                throw new ArgumentException($"Text {texts.Count} is null.", nameof(values));
            int[] ids = TextGenerator.EncodePromptIds(Tokenizer, shape.BosTokenId, value);
            if (ids.Length > shape.MaxContext)
                throw new ArgumentException($"Text {texts.Count} is {ids.Length} tokens, more than the model's context of {shape.MaxContext}.", nameof(values));
            texts.Add(ids);
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var embeddings = new GeneratedEmbeddings<Embedding<float>>(texts.Count);
            var sum = new double[shape.HiddenSize];
            long tokens = 0;
            foreach (int[] ids in texts)
            {
                Array.Clear(sum);
                _session.SumHiddenStates(ids, sum, cancellationToken);
                embeddings.Add(new Embedding<float>(Normalize(sum))
                {
                    ModelId = ModelId,
                    CreatedAt = DateTimeOffset.UtcNow,
                });
                tokens += ids.Length;
            }
            embeddings.Usage = new UsageDetails { InputTokenCount = tokens, TotalTokenCount = tokens };
            return embeddings;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The sum's direction as a unit vector (the mean's direction: dividing by the count first changes nothing).</summary>
    private static float[] Normalize(ReadOnlySpan<double> sum)
    {
        double squares = 0;
        foreach (double value in sum)
            squares += value * value;
        double scale = squares > 0 ? 1 / Math.Sqrt(squares) : 0;
        var vector = new float[sum.Length];
        for (int i = 0; i < vector.Length; i++)
            vector[i] = (float)(sum[i] * scale);
        return vector;
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
            return null;
        if (serviceType == typeof(EmbeddingGeneratorMetadata))
            return Metadata;
        if (serviceType.IsInstanceOfType(this))
            return this;
        if (serviceType.IsInstanceOfType(Model))
            return Model;
        if (serviceType.IsInstanceOfType(Tokenizer))
            return Tokenizer;
        return null;
    }

    /// <summary>Disposes the generator's session (not the model), after a running request.</summary>
    public void Dispose()
    {
        _gate.Wait();
        try
        {
            if (!_disposed)
            {
                _disposed = true;
                _session.Dispose();
            }
        }
        finally
        {
            _gate.Release();
        }
    }
}
