using System.Collections.Generic;
using System.Threading.Tasks;
using Microsoft.Extensions.AI;

namespace Llama.Compiled.Server.Tests;

/// <summary>The in-process LlamaChatClient on the same model: what the server's greedy answers must equal.</summary>
internal static class Reference
{
    private static readonly Stories260K Model = Stories260K.Load(TestPaths.Stories260KHf);

    private static readonly LlamaChatClient Chat = new(
        Model, LlamaTokenizers.Load(TestPaths.Stories260KHf), ChatTemplate.FromTokenizerConfig(TestPaths.Stories260KHf),
        new GenerationOptions { MaxNewTokens = Model.Shape.MaxContext });

    private static readonly TextGenerator Text = new(Model.CreateSession(), LlamaTokenizers.Load(TestPaths.Stories260KHf));

    /// <summary>The greedy answer to <paramref name="user"/>, at most <paramref name="maxTokens"/> tokens.</summary>
    public static async Task<ChatResponse> GreedyAsync(string user, int maxTokens, IList<string>? stop = null) =>
        await Chat.GetResponseAsync([new ChatMessage(ChatRole.User, user)],
            new ChatOptions { Temperature = 0, MaxOutputTokens = maxTokens, StopSequences = stop });

    /// <summary>The answer sampled at temperature 1 with <paramref name="seed"/>: reproducible, and different for different seeds.</summary>
    public static async Task<ChatResponse> SeededAsync(string user, int maxTokens, long seed) =>
        await Chat.GetResponseAsync([new ChatMessage(ChatRole.User, user)],
            new ChatOptions { Temperature = 1, Seed = seed, MaxOutputTokens = maxTokens });

    public static async Task<ChatResponse> GreedyAsyncMessages(IList<ChatMessage> messages, int maxTokens) =>
        await Chat.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = maxTokens });

    private static readonly LlamaEmbeddingGenerator Embedder = new(Model, LlamaTokenizers.Load(TestPaths.Stories260KHf));

    /// <summary>The in-process embedding of <paramref name="text"/>.</summary>
    public static async Task<float[]> EmbeddingAsync(string text) => (await Embedder.GenerateAsync([text]))[0].Vector.ToArray();

    /// <summary>The greedy continuation of <paramref name="prompt"/> (/v1/completions).</summary>
    public static GenerationResult GreedyText(string prompt, int maxTokens)
    {
        lock (Text)
            return Text.GenerateText(prompt, new GenerationOptions { MaxNewTokens = maxTokens, Sampling = new SamplingOptions { Temperature = 0 } });
    }
}
