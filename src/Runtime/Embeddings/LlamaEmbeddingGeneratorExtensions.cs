using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>Creates <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/>s over compiled models.</summary>
public static class LlamaEmbeddingGeneratorExtensions
{
    /// <summary>
    /// An embedding generator that runs <paramref name="model"/> in a session of its own: each text's embedding is the
    /// L2-normalized mean of its tokens' final hidden states (see <see cref="LlamaEmbeddingGenerator"/>).
    /// </summary>
    /// <param name="model">A compiled model; the generator does not dispose it.</param>
    /// <param name="tokenizer">The model's tokenizer (<see cref="LlamaTokenizers.Load"/>).</param>
    /// <param name="modelId">The model id reported in embeddings (default: the model class's name).</param>
    public static LlamaEmbeddingGenerator AsEmbeddingGenerator(this ILlamaModel model, Tokenizer tokenizer, string? modelId = null) =>
        new(model, tokenizer, modelId);
}
