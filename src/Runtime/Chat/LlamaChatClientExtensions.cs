using System;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>Creates <see cref="IChatClient"/>s over compiled models.</summary>
public static class LlamaChatClientExtensions
{
    /// <summary>
    /// A chat client that runs <paramref name="model"/> in a session of its own, rendering
    /// conversations with <paramref name="template"/>.
    /// </summary>
    /// <param name="model">The model; the client does not dispose it.</param>
    /// <param name="tokenizer">The model's tokenizer (<see cref="LlamaTokenizers.Load"/>).</param>
    /// <param name="template">The model's chat template (<see cref="ChatTemplate.FromTokenizerConfig"/>, <see cref="ChatTemplate.FromName"/>).</param>
    /// <param name="defaultOptions">Generation options for what requests leave unset.</param>
    public static LlamaChatClient AsChatClient(this ILlamaModel model, Tokenizer tokenizer, ChatTemplate template, GenerationOptions? defaultOptions = null) =>
        new(model, tokenizer, template, defaultOptions);

    /// <summary>
    /// A chat client whose template is recognised from the <c>tokenizer_config.json</c> in
    /// <paramref name="modelPath"/> (<see cref="ChatTemplate.Plain"/> when the model has no chat template).
    /// </summary>
    /// <param name="model">The model; the client does not dispose it.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="modelPath">The model's folder, or a file in it.</param>
    /// <param name="defaultOptions">Generation options for what requests leave unset.</param>
    /// <exception cref="NotSupportedException">The model's chat template is not of a supported family.</exception>
    public static LlamaChatClient AsChatClient(this ILlamaModel model, Tokenizer tokenizer, string modelPath, GenerationOptions? defaultOptions = null) =>
        new(model, tokenizer, ChatTemplate.FromTokenizerConfig(modelPath), defaultOptions);

    /// <summary>
    /// A chat client with the tokenizer (<c>tokenizer.model</c>) and chat template
    /// (<c>tokenizer_config.json</c>) found in <paramref name="modelPath"/>.
    /// </summary>
    /// <param name="model">The model; the client does not dispose it.</param>
    /// <param name="modelPath">The model's folder, or a file in it.</param>
    /// <param name="defaultOptions">Generation options for what requests leave unset.</param>
    public static LlamaChatClient AsChatClient(this ILlamaModel model, string modelPath, GenerationOptions? defaultOptions = null) =>
        new(model, LlamaTokenizers.Load(modelPath), ChatTemplate.FromTokenizerConfig(modelPath), defaultOptions);

    /// <summary>
    /// A chat client whose requests run on <paramref name="generator"/>, sharing its forward passes with every other request
    /// on it (continuous batching).
    /// </summary>
    /// <param name="generator">The generator; the client does not dispose it.</param>
    /// <param name="template">The model's chat template.</param>
    /// <param name="defaultOptions">Generation options for what requests leave unset.</param>
    public static LlamaChatClient AsChatClient(this BatchedGenerator generator, ChatTemplate template, GenerationOptions? defaultOptions = null) =>
        new(generator, template, defaultOptions);
}
