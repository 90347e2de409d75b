// INTERIM: a stand-in for the runtime's LlamaEmbeddingGenerator (being written by another helper): the mean of
// the logits at every prompt position, L2-normalized. Same interface (IEmbeddingGenerator<string, Embedding<float>>),
// so the /v1/embeddings endpoint does not change when the real one lands. Delete this file then.
using System;
using System.Collections.Generic;
using System.Numerics.Tensors;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled.Server.Interim;

public sealed class LlamaEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    private readonly ILlamaModel _model;
    private readonly Tokenizer _tokenizer;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ILlamaSession _session;
    private readonly TextGenerator _encoder;

    public LlamaEmbeddingGenerator(ILlamaModel model, Tokenizer tokenizer, string? modelId = null)
    {
        _model = model;
        _tokenizer = tokenizer;
        _session = model.CreateSession();
        _encoder = new TextGenerator(_session, tokenizer);
        Metadata = new EmbeddingGeneratorMetadata("Llama.Compiled", null, modelId ?? model.GetType().Name, model.Shape.VocabSize);
    }

    public EmbeddingGeneratorMetadata Metadata { get; }

    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var result = new GeneratedEmbeddings<Embedding<float>>();
            long tokens = 0;
            foreach (string value in values)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int[] ids = _encoder.EncodePrompt(value);
                if (ids.Length > _model.Shape.MaxContext)
                    throw new ArgumentException($"The input is {ids.Length} tokens; the context holds {_model.Shape.MaxContext}.", nameof(values));
                tokens += ids.Length;
                float[] sum = new float[_model.Shape.VocabSize];
                _session.Reset();
                foreach (int id in ids)
                    TensorPrimitives.Add(sum, _session.Forward(id), sum);
                float norm = TensorPrimitives.Norm(sum);
                if (norm > 0)
                    TensorPrimitives.Divide(sum, norm, sum);
                result.Add(new Embedding<float>(sum) { ModelId = Metadata.DefaultModelId, CreatedAt = DateTimeOffset.UtcNow });
            }
            result.Usage = new UsageDetails { InputTokenCount = tokens, TotalTokenCount = tokens };
            return result;
        }
        finally
        {
            _gate.Release();
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is null && serviceType == typeof(EmbeddingGeneratorMetadata) ? Metadata
        : serviceKey is null && serviceType.IsInstanceOfType(this) ? this
        : null;

    public void Dispose() => _session.Dispose();
}
